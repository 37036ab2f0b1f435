"""Held-out conversations for sample generations: the first validation records, as prompts.

A run answers a few fixed prompts at every evaluation (engine.evals.samples). By default they
are the first records of the run's own validation set — the hold-out ``prepare_data`` makes:
``data.validation_path`` (or a saved DatasetDict's validation split), else the seeded
``data.validation_split`` of the training file (``split_records`` over its records) — each cut
into the conversation up to its last assistant turn and that turn as the reference answer.

The records are read from the data cache's memory-mapped Arrow copy of the file, one random
access each (``readers.row_at``): no pass over a large file, no Python list of it. A mix of
several sources (``data.sources``) holds out examples of the mix, not records of a file, so it
has no default sample prompts (``eval.prompts`` names them).
"""

from __future__ import annotations

from engine.data.detect import plan_format
from engine.data.errors import DataError
from engine.data.formats import label_of, normalize
from engine.data.pipeline import source_specs, split_records
from engine.data.readers import open_raw, row_at

SPARE = 4   # records read beyond n, for held-out records without a prompt (plain text) or unreadable


def conversation_of(record: dict, system_prompt: str | None = None) -> tuple[list[dict], str] | None:
    """(messages to answer, reference answer) of one internal record, or None when the record has
    no prompt to answer (plain text)."""
    if "messages" in record:
        msgs = [{"role": m.get("role"), "content": m.get("content")} for m in record["messages"]]
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
        if last is None or last == 0:
            return None
        prompt, reference = msgs[:last], str(msgs[last].get("content") or "")
    elif "prompt" in record:
        prompt, reference = [{"role": "user", "content": str(record["prompt"])}], str(record.get("completion") or "")
    else:
        return None
    if system_prompt and not any(m.get("role") == "system" for m in prompt):
        prompt = [{"role": "system", "content": system_prompt}, *prompt]  # as rendering adds it
    return prompt, reference


def heldout_prompts(data_cfg, n: int, seed: int = 42, base_dir=None) -> list[dict]:
    """The first ``n`` held-out records as ``{"messages": [...], "reference": str}`` (fewer when
    the validation set is smaller; [] without one, for a mix of sources, or for plain text).
    Raises DataError as ``prepare_data`` does for a file it cannot read."""
    if n <= 0:
        return []
    specs = source_specs(data_cfg)
    sample_by = getattr(data_cfg, "sample_by", "document")
    if data_cfg.validation_path:
        held = open_raw(data_cfg.validation_path, base_dir, sample_by)
        indices = range(len(held))
    else:
        if len(specs) > 1:
            return []
        raw = open_raw(specs[0].path, base_dir, sample_by)
        if raw.validation is not None:
            held, indices = raw.validation, range(len(raw.validation))
        elif data_cfg.validation_split > 0:
            held, indices = raw, split_records(len(raw), data_cfg.validation_split, seed)[1]
        else:
            return []
    spec = specs[0]
    sample = [r.row for r in held.samples if r.row is not None] or [
        r.row for r in (row_at(held, i) for i in list(indices)[: n + SPARE]) if r.row is not None]
    if not sample:
        return []
    plan = plan_format(spec.format, held.columns, sample, spec.columns, held.source, None, True)
    system = getattr(data_cfg, "system_prompt", None)
    out = []
    for i in list(indices)[: n + SPARE]:
        r = row_at(held, i)
        if r.row is None:
            continue
        try:
            if label_of(r.row, plan, r.where) is False:
                continue
            conv = conversation_of(normalize(r.row, plan, r.where), system)
        except DataError:
            continue  # training names bad records; a sample prompt just skips one
        if conv is not None:
            out.append({"messages": conv[0], "reference": conv[1]})
            if len(out) >= n:
                break
    return out
