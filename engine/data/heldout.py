"""Held-out conversations for sample generations: the first validation records, as prompts.

A run answers a few fixed prompts at every evaluation (engine.evals.samples). By default they
are the first records of the run's own validation set — the same hold-out ``prepare_data``
makes (``data.validation_path``, or the seeded ``data.validation_split`` of the training file,
through ``split_records``) — each cut into the conversation up to its last assistant turn and
that turn as the reference answer.
"""

from __future__ import annotations

from engine.data.pipeline import load_records, split_records


def conversation_of(record: dict, system_prompt: str | None = None) -> tuple[list[dict], str] | None:
    """(messages to answer, reference answer) of one internal record, or None when the record has
    no prompt to answer (plain text)."""
    if "messages" in record:
        msgs = [dict(m) for m in record["messages"]]
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
        if last is None or last == 0:
            return None
        prompt, reference = msgs[:last], str(msgs[last].get("content") or "")
    elif "prompt" in record:
        prompt, reference = [{"role": "user", "content": str(record["prompt"])}], str(record.get("completion") or "")
    else:
        return None
    if system_prompt and not any(m.get("role") == "system" for m in prompt):
        prompt = [{"role": "system", "content": system_prompt}, *prompt]  # as render() adds it
    return prompt, reference


def heldout_prompts(data_cfg, n: int, seed: int = 42, base_dir=None) -> list[dict]:
    """The first ``n`` held-out records as ``{"messages": [...], "reference": str}`` (fewer when
    the validation set is smaller; [] without one or for plain-text data). Raises DataError as
    ``load_records`` does."""
    if n <= 0:
        return []
    loaded = load_records(data_cfg, base_dir)
    records = loaded.validation
    if not records and data_cfg.validation_split > 0:
        _, held = split_records(loaded.train, data_cfg.validation_split, seed)
        records = [loaded.train[i] for i in held]
    out = []
    for rec in records:
        conv = conversation_of(rec, getattr(data_cfg, "system_prompt", None))
        if conv is not None:
            out.append({"messages": conv[0], "reference": conv[1]})
            if len(out) >= n:
                break
    return out
