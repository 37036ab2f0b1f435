"""load_records (files → internal records) and prepare_data (→ token ids with label masks).

Every step tells the user what it decided and why through the optional reporter (``.log`` and
``.warn``): the format and the reason, the validation set, truncated, dropped and skipped examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.data.errors import DataError, Where
from engine.data.formats import Plan, normalize, plan_format
from engine.data.readers import Table, read_table
from engine.data.render import (
    Rendered,
    has_chat_template,
    render,
    segments,
    template_description,
    tokenize_rendered,
)

IGNORE_INDEX = -100  # the label that carries no loss (PyTorch's cross_entropy ignore_index)


@dataclass
class LoadedData:
    train: list[dict]
    validation: list[dict]
    format: str
    reason: str
    warnings: list[str] = field(default_factory=list)
    n_skipped: int = 0
    source: str = ""
    columns: list[str] = field(default_factory=list)
    # Where each record came from, parallel to train/validation (for messages in later steps).
    train_where: list[Where] = field(default_factory=list, repr=False)
    validation_where: list[Where] = field(default_factory=list, repr=False)


@dataclass
class PreparedData:
    train: list[dict]
    eval: list[dict]
    format: str
    reason: str
    n_truncated: int = 0
    n_dropped: int = 0
    n_skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    # num_tokens, num_trained_tokens, lengths (train); examples_available: before data.max_examples
    stats: dict = field(default_factory=dict)


# ---- records ----------------------------------------------------------------------------------

def load_records(data_cfg, base_dir=None) -> LoadedData:
    """Read data.path (and data.validation_path, or a DatasetDict's validation split) and convert
    every record to the internal shape. Raises DataError for anything unusable."""
    skip = bool(data_cfg.skip_bad_lines)
    table = read_table(data_cfg.path, base_dir, skip)
    plan = plan_format(data_cfg.format, table.columns, table.rows, data_cfg.columns, table.source)
    train, train_where, warnings, n_skipped = _normalize_table(table, plan, skip)

    val_table = read_table(data_cfg.validation_path, base_dir, skip) if data_cfg.validation_path \
        else table.validation
    validation, validation_where = [], []
    if val_table is not None:
        # Same format as the training data, so both render alike; columns are matched afresh.
        vplan = plan_format(plan.format, val_table.columns, val_table.rows, data_cfg.columns, val_table.source)
        validation, validation_where, vwarn, vskipped = _normalize_table(val_table, vplan, skip)
        warnings += vwarn
        n_skipped += vskipped
    return LoadedData(train, validation, plan.format, plan.reason, warnings, n_skipped, table.source,
                      table.columns, train_where, validation_where)


def _normalize_table(table: Table, plan: Plan, skip: bool):
    records, wheres, bad = [], [], list(table.skipped)
    for row, where in zip(table.rows, table.wheres):
        try:
            records.append(normalize(row, plan, where))
            wheres.append(where)
        except DataError as e:
            if not skip:
                raise
            bad.append(e)
    if not records:
        first = bad[0]
        raise DataError(f"no usable records: all {len(bad)} were bad (first: {first.location}: {first.problem})",
                        file=table.source, hint="Fix the file; the first bad record is named above.")
    warnings = [_skipped_message(table.source, bad)] if bad else []
    return records, wheres, warnings, len(bad)


def _skipped_message(source: str, bad: list[DataError]) -> str:
    unit = "lines" if bad[0].line is not None else "records"
    first = bad[0]
    return (f"Skipped {_n(len(bad), 'bad ' + unit[:-1])} of {source} (data.skip_bad_lines); the first, "
            f"{first.location}: {first.problem}.")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _render_message(fmt: str, tokenizer, data_cfg) -> str:
    if fmt == "text":
        return "Plain text: each example is its text followed by the end-of-sequence token, all of it trained."
    if fmt == "prompt_completion" and not has_chat_template(tokenizer):
        how = "raw prompt + completion + end-of-sequence (the tokenizer has no chat template)"
    else:
        how = template_description(tokenizer)
    loss = ("every token (data.train_on_prompt)" if data_cfg.train_on_prompt
            else "completions and assistant turns only")
    return f"Rendering with {how}; loss on {loss}."


def split_records(records: list, fraction: float, seed: int = 42) -> tuple[list[int], list[int]]:
    """Indices (train, validation) of a seeded random hold-out; both keep the original order."""
    n = len(records)
    n_val = min(max(round(n * fraction), 1), n - 1) if fraction > 0 and n >= 2 else 0
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val = sorted(order[:n_val])
    held = set(val)
    return [i for i in range(n) if i not in held], val


# ---- tokens -----------------------------------------------------------------------------------

def prepare_data(data_cfg, tokenizer, seed: int = 42, reporter=None, base_dir=None,
                 extra_prompt_tokens: int = 0) -> PreparedData:
    """Load, split, render, tokenize and mask. ``extra_prompt_tokens`` (virtual tokens of prompt
    tuning) are taken off max_length so that the model's input still fits."""
    log = getattr(reporter, "log", None) or (lambda msg: None)
    warn = getattr(reporter, "warn", None) or (lambda msg: None)

    loaded = load_records(data_cfg, base_dir)
    warnings = list(loaded.warnings)
    log(f"Data: {_n(len(loaded.train), 'example')} from {loaded.source}, format {loaded.format} "
        f"({loaded.reason}).")
    for w in warnings:
        warn(w)

    train, train_where = loaded.train, loaded.train_where
    val, val_where = loaded.validation, loaded.validation_where
    if val:
        log(f"Validation: {len(val)} examples from {data_cfg.validation_path or 'the validation split'}.")
    elif data_cfg.validation_split > 0:
        keep, held = split_records(train, data_cfg.validation_split, seed)
        if held:
            val, val_where = [train[i] for i in held], [train_where[i] for i in held]
            train, train_where = [train[i] for i in keep], [train_where[i] for i in keep]
            log(f"Validation: held out {len(val)} of {len(loaded.train)} examples "
                f"(validation_split={data_cfg.validation_split}, seed {seed}).")
        else:
            msg = "Too few examples to hold out a validation set; training without evaluation."
            warn(msg)
            warnings.append(msg)
    available = len(train)
    if data_cfg.max_examples and data_cfg.max_examples > 0 and len(train) > data_cfg.max_examples:
        log(f"Using the first {data_cfg.max_examples} of {len(train)} training examples (data.max_examples).")
        train, train_where = train[: data_cfg.max_examples], train_where[: data_cfg.max_examples]

    limit = int(data_cfg.max_length) - int(extra_prompt_tokens)
    if limit < 2:
        raise DataError(f"max_length={data_cfg.max_length} leaves no room for text after "
                        f"{extra_prompt_tokens} virtual tokens", field="data.max_length",
                        hint="Raise data.max_length or use fewer virtual tokens.")
    log(_render_message(loaded.format, tokenizer, data_cfg))

    counts = {"long": 0, "truncated": 0, "untrained": 0, "total": 0}
    bad: list[DataError] = []
    train_ex = _encode(train, train_where, tokenizer, data_cfg, limit, counts, bad)
    eval_ex = _encode(val, val_where, tokenizer, data_cfg, limit, counts, bad)

    n_skipped = loaded.n_skipped + len(bad)
    for msg in _count_messages(counts, bad, limit, data_cfg, extra_prompt_tokens):
        warn(msg)
        warnings.append(msg)
    if not train_ex:
        raise DataError("no training examples left after truncation and filtering", file=loaded.source,
                        hint="See the warnings above; raise data.max_length or fix the data.")
    n_truncated = counts["truncated"]
    n_dropped = counts["untrained"] + (counts["long"] if data_cfg.drop_long else 0)
    lengths = [len(e["input_ids"]) for e in train_ex]
    stats = {"num_tokens": sum(lengths),
             "num_trained_tokens": sum(sum(1 for t in e["labels"] if t != IGNORE_INDEX) for e in train_ex),
             "lengths": lengths, "examples_available": available}
    log(f"Prepared {len(train_ex)} training and {len(eval_ex)} evaluation examples: {stats['num_tokens']} "
        f"training tokens, {stats['num_trained_tokens']} of them trained; longest {max(lengths)} tokens.")
    return PreparedData(train_ex, eval_ex, loaded.format, loaded.reason, n_truncated, n_dropped, n_skipped,
                        warnings, stats)


def _render_all(records, wheres, tokenizer, data_cfg, bad):
    rendered = []
    for rec, where in zip(records, wheres):
        try:
            rendered.append(render(rec, tokenizer, data_cfg, where))
        except DataError as e:
            if not data_cfg.skip_bad_lines:
                raise
            bad.append(e)
    return rendered


def _encode(records, wheres, tokenizer, data_cfg, limit, counts, bad) -> list[dict]:
    out = []
    rendered = _render_all(records, wheres, tokenizer, data_cfg, bad)
    for enc in tokenize_rendered(rendered, tokenizer):
        counts["total"] += 1
        ids, labels = enc.ids, [t if f else IGNORE_INDEX for t, f in zip(enc.ids, enc.flags)]
        cut = len(ids) > limit
        if cut:
            counts["long"] += 1
            if data_cfg.drop_long:
                continue
            ids, labels = ids[:limit], labels[:limit]
        # labels[0] never carries loss (nothing predicts the first token), so it does not count.
        if all(t == IGNORE_INDEX for t in labels[1:]):
            counts["untrained"] += 1  # a truncated example dropped here counts as dropped only
            continue
        counts["truncated"] += cut
        out.append({"input_ids": ids, "labels": labels})
    return out


def _count_messages(counts, bad, limit, data_cfg, extra) -> list[str]:
    total = counts["total"]
    ml = f"max_length={data_cfg.max_length}" + (f" minus {extra} virtual tokens" if extra else "")
    out = []
    if bad:
        out.append(_skipped_message(bad[0].file or "the data", bad))
    if counts["long"] and data_cfg.drop_long:
        out.append(f"{counts['long']} of {total} examples were longer than {ml} and were dropped "
                   "(data.drop_long).")
    elif counts["truncated"]:
        out.append(f"{counts['truncated']} of {total} examples were longer than {ml} and were truncated. "
                   "Raise data.max_length, or set data.drop_long: true to drop them instead.")
    if counts["untrained"]:
        out.append(f"{counts['untrained']} of {total} examples had no answer tokens left to learn from "
                   f"within {limit} tokens and were dropped. Raise data.max_length.")
    return out


# ---- helpers for the GUI ----------------------------------------------------------------------

def render_segments(record: dict, tokenizer, data_cfg) -> list[tuple[str, bool]]:
    """Text pieces of one internal record and whether each is trained (label != -100), exactly as
    prepare_data labels it (before truncation to max_length)."""
    r = render(record, tokenizer, data_cfg)
    return segments(r, tokenize_rendered([r], tokenizer)[0], tokenizer)


def token_lengths(records: list[dict], tokenizer, data_cfg) -> list[int]:
    """Tokens per internal record as rendered for training, before truncation."""
    rendered: list[Rendered] = [render(r, tokenizer, data_cfg) for r in records]
    return [len(e.ids) for e in tokenize_rendered(rendered, tokenizer)]
