"""prepare_data: data files → tokenized examples with label masks, on ``datasets``, cached.

The steps (each source of ``data.sources``, or ``data.path``):

1. ``readers.open_raw``: the file as a memory-mapped Arrow dataset, one row per record (cached).
2. ``detect.plan_format`` on a sample: the format and the columns, and a refusal for columns that
   change what is learned (tasks.py). Then a fail-fast pass over the sample in this process, so a
   systematic problem is named in a second, not after the whole file.
3. ``Dataset.map(Encoder, batched=True, num_proc=…)``: normalise, render, tokenize and mask every
   record into an Arrow file in the data cache, keyed by a fingerprint of the file, the settings,
   the tokenizer and the chat template (cache.py). A rerun loads it memory-mapped: no work.
4. Select in numpy: bad records (named by line, raised unless ``data.skip_bad_lines``), the seeded
   validation hold-out, ``data.max_examples``, and the mix of several sources by weight
   (``datasets.interleave_datasets`` on an index of the kept examples).

The result's ``train``/``eval`` are ``Examples``: sequences over the Arrow data that the Trainer,
the collator and the estimator read like lists, without Python lists of the whole set. Its
``report`` is the data report (report.py). Every step tells the user what it decided and why
through the optional reporter (``.log`` and ``.warn``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from engine.data.detect import plan_format
from engine.data.encode import (
    DROPPED_LONG,
    DROPPED_UNTRAINED,
    FILTERED,
    IGNORE_INDEX,
    LONG_MODES,
    OK,
    SKIPPED,
    TRUNCATED,
    Encoder,
    EncodeSpec,
    RenderConfig,
)
from engine.data.errors import DataError, Where
from engine.data.examples import Examples
from engine.data.formats import NormOptions, Plan, label_of, normalize
from engine.data.mix import interleave_order
from engine.data.readers import RawSource, Table, open_raw, read_table
from engine.data.render import (
    Rendered,
    has_chat_template,
    render,
    segments,
    template_caps,
    template_description,
    tokenize_rendered,
)

__all__ = ["IGNORE_INDEX", "LoadedData", "PreparedData", "load_records", "prepare_data", "render_segments",
           "split_records", "token_lengths"]

_PARALLEL_MIN_ROWS = 4000   # below this, worker start-up costs more than it saves
_MAX_PROC = 8
_FAIL_FAST_ROWS = 200       # records of a big file rendered up front


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
    plan: Plan | None = None


@dataclass
class PreparedData:
    """``train``/``eval``: Examples (sequences of ``{"input_ids", "labels"}``). ``stats``:
    num_tokens, num_trained_tokens, lengths (train, a list), examples_available (training records
    before data.max_examples), prepare_s (seconds spent here) and cached (True when every source
    came from the data cache). ``report``: the data report (report.DataReport)."""

    train: Examples
    eval: Examples
    format: str
    reason: str
    n_truncated: int = 0
    n_dropped: int = 0
    n_skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    report: object = None


# ---- sources ------------------------------------------------------------------------------------

@dataclass
class SourceSpec:
    """One entry of data.sources (or data.path alone)."""

    path: str
    weight: float
    format: str
    columns: dict
    field: str          # the config field that names it (for messages)


def source_specs(data_cfg) -> list[SourceSpec]:
    """data.sources as SourceSpecs (each a path, or {path, weight, format, columns}); data.path
    alone when there are none. Raises DataError naming the bad entry."""
    raw = list(getattr(data_cfg, "sources", None) or [])
    if not raw:
        return [SourceSpec(data_cfg.path, 1.0, data_cfg.format, dict(data_cfg.columns or {}), "data.path")]
    out = []
    for i, s in enumerate(raw):
        f = f"data.sources[{i}]"
        if isinstance(s, str):
            s = {"path": s}
        if not isinstance(s, dict) or not str(s.get("path") or "").strip():
            raise DataError("each source needs a path, e.g. {path: chat.jsonl, weight: 2}", field=f,
                            hint="Write each source as a file path or as {path: ..., weight: ...}.")
        unknown = set(s) - {"path", "weight", "format", "columns"}
        if unknown:
            raise DataError(f"unknown key {sorted(unknown)[0]!r}", field=f,
                            hint="A source takes path, weight, format and columns.")
        try:
            weight = float(s.get("weight", 1.0))
        except (TypeError, ValueError):
            weight = -1.0
        if not weight > 0:
            raise DataError(f"the weight must be a positive number (got {s.get('weight')!r})", field=f + ".weight",
                            hint="Weights are relative: {weight: 2} samples a source twice as often as weight 1.")
        out.append(SourceSpec(str(s["path"]), weight, str(s.get("format") or data_cfg.format),
                              dict(s.get("columns") or data_cfg.columns or {}), f + ".path"))
    return out


def open_source(path: str, base_dir, field_name: str, sample_by: str = "document") -> RawSource:
    """readers.open_raw of one source; a missing file of data.sources is named by its entry
    (``field_name``: data.sources[i].path), so the window can point at it."""
    try:
        return open_raw(path, base_dir, sample_by)
    except DataError as e:
        if e.field is None and field_name != "data.path" and "not found" in e.problem:
            e = DataError(e.problem, file=e.file, field=field_name, hint=e.hint)
        raise e from None


# ---- records (Python lists: small data, the studio's current preview) ---------------------------

def load_records(data_cfg, base_dir=None) -> LoadedData:
    """Read data.path (and data.validation_path, or a DatasetDict's validation split) and convert
    every record to the internal shape, as Python lists (for small data; training uses
    prepare_data). Raises DataError for anything unusable."""
    skip = bool(data_cfg.skip_bad_lines)
    sample_by = getattr(data_cfg, "sample_by", "document")
    spec = source_specs(data_cfg)[0]
    table = read_table(spec.path, base_dir, skip, sample_by)
    plan = plan_format(spec.format, table.columns, table.rows, spec.columns, table.source)
    train, train_where, warnings, n_skipped = _normalize_table(table, plan, skip)

    val_table = read_table(data_cfg.validation_path, base_dir, skip, sample_by) if data_cfg.validation_path \
        else table.validation
    validation, validation_where = [], []
    if val_table is not None:
        # Same format as the training data, so both render alike; columns are matched afresh.
        vplan = plan_format(plan.format, val_table.columns, val_table.rows, spec.columns, val_table.source)
        validation, validation_where, vwarn, vskipped = _normalize_table(val_table, vplan, skip)
        warnings += vwarn
        n_skipped += vskipped
    return LoadedData(train, validation, plan.format, plan.reason, warnings, n_skipped, table.source,
                      table.columns, train_where, validation_where, plan)


def _normalize_table(table: Table, plan: Plan, skip: bool):
    records, wheres, bad = [], [], list(table.skipped)
    for row, where in zip(table.rows, table.wheres):
        try:
            record = normalize(row, plan, where)
            if label_of(row, plan, where) is False:
                continue
            records.append(record)
            wheres.append(where)
        except DataError as e:
            if not skip:
                raise
            bad.append(e)
    if not records:
        first = bad[0] if bad else None
        if first is None:
            raise DataError("no usable records: every record is labelled false", file=table.source,
                            hint="Map a label column only when some rows are labelled true.")
        raise DataError(f"no usable records: all {len(bad)} were bad (first: {first.location}: {first.problem})",
                        file=table.source, hint="Fix the file; the first bad record is named above.")
    warnings = [_skipped_message(table.source, bad)] if bad else []
    return records, wheres, warnings, len(bad)


def _skipped_message(source: str, bad: list[DataError], total: int | None = None) -> str:
    """One warning for skipped records: how many, the first with its reason, where the others are."""
    total = len(bad) if total is None else total
    unit = "lines" if bad[0].line is not None else "records"
    first = bad[0]
    text = (f"Skipped {_n(total, 'bad ' + unit[:-1])} of {source} (data.skip_bad_lines); the first, "
            f"{first.location}: {first.problem}.")
    if total > 1:
        text += f" Also skipped: {_places(bad[1:], total=total - 1)}."
    return text


def _places(errors: list[DataError], shown: int = 5, total: int | None = None) -> str:
    """'line 4, line 9 and 3 more (...)': where errors are, the first few named."""
    total = len(errors) if total is None else total
    names = [e.location.split(",")[0] for e in errors[:shown]]
    more = total - len(names)
    return ", ".join(names) + (f" and {more} more (peft-studio data lists them all)" if more > 0 else "")


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


def split_records(records, fraction: float, seed: int = 42) -> tuple[list[int], list[int]]:
    """Indices (train, validation) of a seeded random hold-out of ``records`` (a sequence or its
    length); both keep the original order. ``round(n × fraction)`` are held out, at least one and
    never all (none when ``fraction`` is 0 or there are fewer than two)."""
    train, held = _split_rows(records if isinstance(records, int) else len(records), fraction, seed)
    return train.tolist(), held.tolist()


def _split_rows(n: int, fraction: float, seed: int):
    """split_records in numpy (a million rows need no Python lists)."""
    import numpy as np

    n_val = min(max(round(n * fraction), 1), n - 1) if fraction > 0 and n >= 2 else 0
    held = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
    keep = np.ones(n, dtype=bool)
    keep[held] = False
    return np.nonzero(keep)[0], held


# ---- tokens -------------------------------------------------------------------------------------

@dataclass
class _Encoded:
    """One source's records, encoded: the Arrow rows and their small columns in numpy."""

    raw: RawSource
    plan: Plan
    dataset: object                 # datasets.Dataset (memory-mapped)
    cols: dict                      # status, row, line, length, full_length, n_trained, chunk → numpy
    cached: bool
    key: str
    rows_encoded: int               # raw records that went through the map (all, or a selection)


def prepare_data(data_cfg, tokenizer, seed: int = 42, reporter=None, base_dir=None,
                 extra_prompt_tokens: int = 0, num_proc: int | None = None, strict: bool = True) -> PreparedData:
    """Load, split, render, tokenize and mask (see the module docstring).

    ``extra_prompt_tokens`` (virtual tokens of prompt tuning) are taken off max_length so that the
    model's input still fits. ``num_proc``: tokenizing processes (default data.num_proc; 0 or None:
    one per core for large sets). Raises DataError for unusable data, before any model weights load.
    ``strict=False`` (the data report) lists bad records instead of raising the first, and returns
    even when no example is left.
    """
    t_start = time.perf_counter()
    log = getattr(reporter, "log", None) or (lambda msg: None)
    warn = getattr(reporter, "warn", None) or (lambda msg: None)
    warnings: list[str] = []

    def warn_(msg):
        warn(msg)
        warnings.append(msg)

    limit = int(data_cfg.max_length) - int(extra_prompt_tokens)
    if limit < 2:
        raise DataError(f"max_length={data_cfg.max_length} leaves no room for text after "
                        f"{extra_prompt_tokens} virtual tokens", field="data.max_length",
                        hint="Raise data.max_length or use fewer virtual tokens.")
    long_mode = _long_mode(data_cfg)
    skip = bool(data_cfg.skip_bad_lines) or not strict
    caps = template_caps(tokenizer)
    specs = source_specs(data_cfg)
    if getattr(data_cfg, "sources", None):
        log("data.sources is set, so data.path is not used.")
    nproc = num_proc if num_proc is not None else int(getattr(data_cfg, "num_proc", 0) or 0)
    ctx = _Context(data_cfg, tokenizer, caps, limit, long_mode, skip, nproc, base_dir, log)

    # One source: hold out and cap records before encoding, so a capped run (the estimator's
    # sample) encodes only what it uses. Several: encode each, mix, then hold out.
    sources = [ctx.open(s) for s in specs]
    single = len(specs) == 1
    sel = (_select_one(ctx, specs[0], *sources[0], seed, warn_) if single
           else _select_mixed(ctx, specs, sources, seed, warn_))
    encoded, train_parts, val_parts = sel.encoded, sel.train_parts, sel.val_parts
    plan = sources[0][1]

    _raise_or_warn_bad(encoded, skip, warn_, strict)
    counts = _counts(encoded, train_parts, val_parts)
    for msg in _count_messages(counts, data_cfg, limit, extra_prompt_tokens, long_mode):
        warn_(msg)
    train = _examples(train_parts)
    evaluation = _examples(val_parts)
    if not len(train) and strict:
        raise DataError("no training examples left after truncation and filtering", file=encoded[0].raw.source,
                        hint="See the warnings above; raise data.max_length or fix the data.")
    from engine.data.report import build_report

    fmt = plan.format if single or len({p.format for _, p in sources}) == 1 else "mixed"
    reason = plan.reason if single else "; ".join(f"{r.source}: {p.reason}" for r, p in sources)
    report = build_report(encoded, train_parts, val_parts, specs, caps, data_cfg, limit, long_mode,
                          mixed=sel.mixed, validation_from=sel.val_from)
    for line in report.log_lines():
        log(line)
    for msg in report.advice():
        warn_(msg)
    stats = {"num_tokens": train.num_tokens(), "num_trained_tokens": train.num_trained_tokens(),
             "lengths": train.lengths.tolist(), "examples_available": sel.available,
             "prepare_s": time.perf_counter() - t_start, "cached": all(e.cached for e in encoded)}
    longest = int(train.lengths.max()) if len(train) else 0
    log(f"Prepared {len(train)} training and {len(evaluation)} evaluation examples: {stats['num_tokens']} "
        f"training tokens, {stats['num_trained_tokens']} of them trained; longest {longest} tokens.")
    log(f"Data ready in {stats['prepare_s']:.1f} s" + (" (from the data cache)." if stats["cached"] else "."))
    n_skipped = counts["skipped"]
    return PreparedData(train, evaluation, fmt, reason, counts["truncated"],
                        counts["untrained"] + counts["dropped_long"], n_skipped, warnings, stats, report)



@dataclass
class _Selection:
    """What a run reads: the encoded sources and, in order, the positions it trains and evaluates."""

    encoded: list                    # _Encoded, one per source (and one for a validation file)
    train_parts: list                # [(encoded, positions)] in training order
    val_parts: list
    available: int                   # training records (or mixed examples) before data.max_examples
    val_from: str | None = None      # a validation file or split, when not held out
    mixed: _Mixed | None = None


def _select_one(ctx: _Context, spec: SourceSpec, raw: RawSource, plan: Plan, seed: int, warn) -> _Selection:
    """One source: the seeded hold-out and data.max_examples on records, then encode what is used."""
    data_cfg, log = ctx.data_cfg, ctx.log
    val_raw = _validation_raw(data_cfg, raw, ctx.base_dir)
    import numpy as np

    n = len(raw)
    train_rows, val_rows = None, np.zeros(0, dtype=np.int64)   # None: every record trains
    if val_raw is None and data_cfg.validation_split > 0:
        train_rows, val_rows = _split_rows(n, data_cfg.validation_split, seed)
    available = n if train_rows is None else len(train_rows)
    subset = None
    if data_cfg.max_examples and data_cfg.max_examples > 0 and available > data_cfg.max_examples:
        log(f"Using the first {data_cfg.max_examples} of {available} training examples (data.max_examples).")
        train_rows = (np.arange(n) if train_rows is None else train_rows)[: data_cfg.max_examples]
        subset = np.sort(np.concatenate([train_rows, val_rows])).tolist()
    log(f"Data: {_n(n, 'example')} from {raw.source}, format {plan.format} ({plan.reason}).")
    log(_render_message(plan.format, ctx.tokenizer, data_cfg))
    enc = ctx.encode(raw, plan, subset)
    sel = _Selection([enc], [(enc, _kept(enc, rows=train_rows))], [], available)
    if val_raw is not None:
        vplan = plan_format(plan.format, val_raw.columns, _sample_rows(val_raw), spec.columns, val_raw.source,
                            ctx.caps, ctx.skip_tools)
        venc = ctx.encode(val_raw, vplan, None)
        sel.encoded.append(venc)
        sel.val_parts = [(venc, _kept(venc))]
        # which split of a saved DatasetDict (readers.VALIDATION_SPLITS), in the log and the report
        sel.val_from = data_cfg.validation_path or f"{val_raw.source}, the saved dataset's validation split"
        log(f"Validation: {len(val_raw)} examples from {sel.val_from}.")
    elif len(val_rows):
        sel.val_parts = [(enc, _kept(enc, rows=val_rows))]
        log(f"Validation: held out {len(val_rows)} of {n} examples "
            f"(validation_split={data_cfg.validation_split}, seed {seed}).")
    elif data_cfg.validation_split > 0:
        warn("Too few examples to hold out a validation set; training without evaluation.")
    return sel


def _select_mixed(ctx: _Context, specs: list, sources: list, seed: int, warn) -> _Selection:
    """Several sources: encode each whole, interleave by weight, then hold out and cap the mix."""
    data_cfg, log = ctx.data_cfg, ctx.log
    encoded = []
    for raw, plan in sources:
        log(f"Data: {_n(len(raw), 'example')} from {raw.source}, format {plan.format} ({plan.reason}).")
        encoded.append(ctx.encode(raw, plan, None))
    log(_render_message(sources[0][1].format, ctx.tokenizer, data_cfg))
    stopping = getattr(data_cfg, "mix_stopping", "first_exhausted")
    mixed = _mix(encoded, [s.weight for s in specs], seed, stopping)
    log("Mixed " + ", ".join(f"{len(used)} from {e.raw.source} (weight {s.weight:g})"
                             for e, s, used in zip(encoded, specs, mixed.per_source)) + f" ({stopping}).")
    order = mixed.order  # (source index, position) in training order
    val_order: list = []
    val_from = None
    if data_cfg.validation_path:
        val_raw = _validation_raw(data_cfg, None, ctx.base_dir)
        vplan = plan_format("auto", val_raw.columns, _sample_rows(val_raw), specs[0].columns, val_raw.source,
                            ctx.caps, ctx.skip_tools)
        encoded.append(ctx.encode(val_raw, vplan, None))
        val_order = [(len(encoded) - 1, int(p)) for p in _kept(encoded[-1])]
        val_from = data_cfg.validation_path
        log(f"Validation: {len(val_raw)} examples from {val_from}.")
    elif data_cfg.validation_split > 0:
        keep, held = _split_rows(len(order), data_cfg.validation_split, seed)
        val_order, order = [order[i] for i in held], [order[i] for i in keep]
        if val_order:
            log(f"Validation: held out {len(val_order)} of {len(order) + len(val_order)} mixed examples "
                f"(validation_split={data_cfg.validation_split}, seed {seed}).")
        else:
            warn("Too few examples to hold out a validation set; training without evaluation.")
    available = len(order)
    if data_cfg.max_examples and data_cfg.max_examples > 0 and len(order) > data_cfg.max_examples:
        log(f"Using the first {data_cfg.max_examples} of {len(order)} training examples (data.max_examples).")
        order = order[: data_cfg.max_examples]
    return _Selection(encoded, _group(encoded, order), _group(encoded, val_order), available, val_from, mixed)


def _long_mode(data_cfg) -> str:
    mode = getattr(data_cfg, "long_examples", "truncate") or "truncate"
    if mode not in LONG_MODES:
        raise DataError(f"unknown data.long_examples '{mode}'", field="data.long_examples",
                        hint=f"Use one of {', '.join(LONG_MODES)}.")
    if data_cfg.drop_long:
        if mode == "chunk":
            raise DataError("data.drop_long: true contradicts data.long_examples: chunk", field="data.long_examples",
                            hint="Choose one: long_examples: chunk (windows) or drop (drop_long means drop).")
        mode = "drop"
    return mode


class _Context:
    """The settings every source is opened and encoded with."""

    def __init__(self, data_cfg, tokenizer, caps, limit, long_mode, skip, nproc, base_dir, log):
        self.data_cfg, self.tokenizer, self.caps = data_cfg, tokenizer, caps
        self.limit, self.long_mode, self.skip, self.nproc = limit, long_mode, skip, nproc
        # A tools column the template cannot render is tolerated only when the user asked to skip
        # bad rows (the report, which lists bad rows anyway, refuses it as training would).
        self.skip_tools = bool(data_cfg.skip_bad_lines)
        self.base_dir, self.log = base_dir, log
        self.render_cfg = RenderConfig(getattr(data_cfg, "system_prompt", None) or None,
                                       bool(data_cfg.train_on_prompt),
                                       dict(getattr(data_cfg, "replacements", None) or {}),
                                       getattr(data_cfg, "reasoning", "auto") or "auto")
        self._tok_digest = None

    def open(self, spec: SourceSpec) -> tuple[RawSource, Plan]:
        raw = open_source(spec.path, self.base_dir, spec.field, getattr(self.data_cfg, "sample_by", "document"))
        rows = _sample_rows(raw, self.skip)
        plan = plan_format(spec.format, raw.columns, rows, spec.columns, raw.source, self.caps, self.skip_tools)
        if self.long_mode == "chunk" and plan.format != "text":
            raise DataError(f"data.long_examples: chunk cuts plain text into windows, but {raw.source} is "
                            f"{plan.format} data", field="data.long_examples",
                            hint="Use truncate or drop for conversations and prompt/completion pairs.")
        return raw, plan

    def tokenizer_digest(self) -> str:
        if self._tok_digest is None:
            self._tok_digest = tokenizer_digest(self.tokenizer)
        return self._tok_digest

    def spec(self, raw: RawSource, plan: Plan, row_ids) -> EncodeSpec:
        # Keys outside the plan's columns are counted per record by the workers (report: ignored columns).
        return EncodeSpec(plan, raw.source, raw.unit, raw.typed, plan.used, self.limit, self.long_mode,
                          self.caps.part_separator, self.render_cfg, row_ids)

    def encode(self, raw: RawSource, plan: Plan, subset: list[int] | None) -> _Encoded:
        """Encode ``raw`` (or its rows ``subset``), from the cache when it has this exact result."""
        import datasets

        import engine.data.cache as cache

        spec = self.spec(raw, plan, subset)
        settings = {"plan": [plan.format, plan.columns], "limit": self.limit, "long": self.long_mode,
                    "sep": self.caps.part_separator, "render": vars(self.render_cfg),
                    "caps": self.caps.digest}
        key = cache.digest("prepared", raw.key, settings, self.tokenizer_digest(),
                           cache.digest(subset) if subset is not None else None, cache.code_version())
        use_cache = bool(getattr(self.data_cfg, "cache", True))
        with cache.lock("prepared", key):
            meta = cache.load_entry("prepared", key) if use_cache else None
            cached = meta is not None
            if meta is None:
                meta = self._build(raw, plan, spec, subset, key)
        folder = cache.entry_dir("prepared", key)
        parts = [datasets.Dataset.from_file(str(folder / f)) for f in meta["files"]]
        ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        table = ds.data
        cols = {c: table.column(c).to_numpy() for c in ("status", "row", "line", "length", "full_length",
                                                        "n_trained", "chunk")}
        return _Encoded(raw, plan, ds, cols, cached, key, len(subset) if subset is not None else len(raw))

    def _build(self, raw: RawSource, plan: Plan, spec: EncodeSpec, subset, key: str) -> dict:
        """Run the map into a new cache entry; returns its meta."""
        import engine.data.cache as cache
        from engine.data.encode import features

        self._fail_fast(raw, plan)
        source = raw.dataset if subset is None else raw.dataset.select(subset, keep_in_memory=True,
                                                                        new_fingerprint=key + "-in")
        nproc = self._procs(len(source))
        t0 = time.perf_counter()
        self.log(f"Tokenizing {_n(len(source), 'record')} of {raw.source}"
                 + (f" in {nproc} processes." if nproc > 1 else "."))
        with cache.Building("prepared", key) as b, _quiet_datasets():
            source.map(Encoder(spec, self.tokenizer), batched=True, with_indices=True, batch_size=256,
                       remove_columns=source.column_names, features=features(),
                       num_proc=nproc if nproc > 1 else None, cache_file_name=str(b.path / "encoded.arrow"),
                       new_fingerprint=key, writer_batch_size=1000, load_from_cache_file=False)
            files = sorted(f.name for f in b.path.glob("encoded*.arrow"))
            b.commit({"source": raw.source, "path": str(raw.path), "files": files, "records": len(source),
                      "seconds": time.perf_counter() - t0, "procs": nproc})
        self.log(f"Tokenized in {time.perf_counter() - t0:.1f} s; kept in the data cache.")
        cache.enforce_limit(keep={key, raw.key})
        return cache.load_entry("prepared", key)

    def _procs(self, n: int) -> int:
        if self.nproc and self.nproc > 0:
            return min(self.nproc, max(n, 1))
        if n < _PARALLEL_MIN_ROWS:
            return 1
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, _MAX_PROC))

    def _fail_fast(self, raw: RawSource, plan: Plan) -> None:
        """Normalise and render the first records here: a systematic problem in a big file is
        named at once, not after the whole file is tokenized. (A file no bigger than the sample
        is tokenized in a moment anyway; its errors come from the map, all of them.)"""
        if self.skip or len(raw) <= len(raw.samples):
            return
        opts = NormOptions(self.caps.part_separator)
        errors = []
        for r in raw.samples[:_FAIL_FAST_ROWS]:
            try:
                if r.error is not None:
                    raise r.error
                record = normalize(r.row, plan, r.where, opts)
                if label_of(r.row, plan, r.where) is not False:
                    render(record, self.tokenizer, self.render_cfg, r.where, self.caps)
            except DataError as e:
                errors.append(e)
        if errors:
            raise _first_of(errors, exact=False)


class _quiet_datasets:
    """datasets' progress bars off (events and log lines report progress instead)."""

    def __enter__(self):
        import datasets as dtqdm

        self.was = dtqdm.are_progress_bars_disabled()
        dtqdm.disable_progress_bars()

    def __exit__(self, *exc):
        import datasets as dtqdm

        if not self.was:
            dtqdm.enable_progress_bars()


def tokenizer_digest(tokenizer) -> str:
    """A hash of what tokenizing depends on: the vocabulary and rules, special tokens, template."""
    import engine.data.cache as cache
    from engine.data.template import chat_template_for

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        body = repr(sorted(tokenizer.get_vocab().items()))
    import hashlib

    return cache.digest(type(tokenizer).__name__, hashlib.sha256(body.encode("utf-8")).hexdigest(),
                        getattr(tokenizer, "special_tokens_map", {}), chat_template_for(tokenizer),
                        getattr(tokenizer, "add_bos_token", None), getattr(tokenizer, "add_eos_token", None))


def _sample_rows(raw: RawSource, skip: bool = True) -> list[dict]:
    """The parsed rows of the sample; when none parsed, the reason (all bad, or the first error)."""
    rows = [r.row for r in raw.samples if r.row is not None]
    if not rows and raw.samples:
        bad = [r.error for r in raw.samples if r.error is not None]
        if not skip or len(raw.samples) < len(raw):
            raise bad[0]
        raise DataError(f"no usable records: all {len(bad)} were bad (first: {bad[0].location}: {bad[0].problem})",
                        file=raw.source, hint="Fix the file; the first bad record is named above.")
    return rows


def _validation_raw(data_cfg, raw: RawSource | None, base_dir) -> RawSource | None:
    if data_cfg.validation_path:
        return open_raw(data_cfg.validation_path, base_dir, getattr(data_cfg, "sample_by", "document"))
    return raw.validation if raw is not None else None


def _kept(enc: _Encoded, rows=None):
    """Positions (in enc.dataset) of trained examples, in order; only of raw ``rows`` if given."""
    import numpy as np

    status = enc.cols["status"]
    mask = (status == OK) | (status == TRUNCATED)
    if rows is not None:
        wanted = np.zeros(int(enc.cols["row"].max(initial=-1)) + 1 if len(status) else 0, dtype=bool)
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[rows < len(wanted)]
        wanted[rows] = True
        mask &= wanted[enc.cols["row"]] if len(wanted) else False
    return np.nonzero(mask)[0]


@dataclass
class _Mixed:
    order: list              # (source index, position) in training order
    per_source: list         # positions used, per source


def _mix(encoded: list[_Encoded], weights: list[float], seed: int, stopping: str) -> _Mixed:
    """Interleave the sources' kept examples by weight (mix.interleave_order: exactly as
    datasets.interleave_datasets)."""
    import numpy as np

    kept = []
    for enc in encoded:
        k = _kept(enc)
        if not len(k):
            raise DataError("no training examples left in this source after filtering", file=enc.raw.source,
                            hint="Fix the source or remove it from data.sources.")
        kept.append(k)
    s_col, i_col = interleave_order([len(k) for k in kept], weights, seed, stopping)
    p_col = np.zeros(len(s_col), dtype=np.int64)
    for s, k in enumerate(kept):
        at = s_col == s
        p_col[at] = k[i_col[at]]
    order = list(zip(s_col.tolist(), p_col.tolist()))
    per = [sorted(set(p_col[s_col == s].tolist())) for s in range(len(encoded))]
    return _Mixed(order, per)


def _group(encoded: list[_Encoded], order: list) -> list:
    """(source, position) pairs → [(encoded, positions)] keeping the order (runs of one source)."""
    import numpy as np

    parts: list = []
    for s, p in order:
        if parts and parts[-1][0] is encoded[s]:
            parts[-1][1].append(p)
        else:
            parts.append((encoded[s], [p]))
    return [(e, np.asarray(ps, dtype=np.int64)) for e, ps in parts]


def _examples(parts: list) -> Examples:
    """One Examples over [(encoded, positions)], in that order."""
    import datasets
    import numpy as np

    parts = [(e, p) for e, p in parts if len(p)]
    if not parts:
        return Examples.empty()
    selected = [e.dataset.select(p.tolist(), keep_in_memory=True, new_fingerprint=f"{e.key}-{k}")
                for k, (e, p) in enumerate(parts)]
    ds = selected[0] if len(selected) == 1 else datasets.concatenate_datasets(selected)
    lengths = np.concatenate([e.cols["length"][p] for e, p in parts])
    trained = np.concatenate([e.cols["n_trained"][p] for e, p in parts])
    index = [(e, p) for e, p in parts]
    starts = np.cumsum([0] + [len(p) for _, p in parts])

    def where(i: int) -> Where:
        k = int(np.searchsorted(starts, i, side="right") - 1)
        e, p = index[k]
        line = int(e.cols["line"][p[i - starts[k]]])
        return Where(e.raw.source, line=line) if e.raw.unit == "line" else Where(e.raw.source, record=line)

    return Examples(ds, lengths, trained, where)


def _raise_or_warn_bad(encoded: list[_Encoded], skip: bool, warn, strict: bool = True) -> None:
    """Bad records: the first raised (naming how many more and where) unless skipping; else one
    warning per source that names them."""
    import numpy as np

    for enc in encoded:
        bad = np.nonzero(enc.cols["status"] == SKIPPED)[0]
        if not len(bad):
            continue
        errors = _errors(enc, bad[:6])
        first = errors[0]
        if len(bad) == enc.rows_encoded and strict:
            if not skip:
                raise first
            raise DataError(f"no usable records: all {len(bad)} were bad (first: {first.location}: {first.problem})",
                            file=enc.raw.source, hint="Fix the file; the first bad record is named above.")
        if not skip:
            raise _first_of(errors, total=len(bad))
        warn(_skipped_message(enc.raw.source, errors, total=len(bad)))


def _first_of(errors: list[DataError], total: int | None = None, exact: bool = True) -> DataError:
    """The first error, saying how many more there are and where (``exact``: False when only a
    sample was read, so there may be more)."""
    first = errors[0]
    total = len(errors) if total is None else total
    if total == 1:
        return first
    unit = "line" if first.line is not None else "record"
    n = total - 1
    more = (f"{n} more bad {unit}{'s' if n > 1 else ''}" + ("" if exact else " among the first records read")
            + f": {_places(errors[1:], total=n)}")
    return DataError(f"{first.problem} ({more})", file=first.file, line=first.line, record=first.record,
                     field=first.field, hint=first.hint)


def _errors(enc: _Encoded, positions) -> list[DataError]:
    import json

    rows = enc.dataset.select([int(p) for p in positions], keep_in_memory=True)["error"]
    return [DataError.from_dict(json.loads(e)) for e in rows]


def _counts(encoded: list[_Encoded], train_parts, val_parts) -> dict:
    """Counts over the examples this run reads (the encoded records it selected)."""
    import numpy as np

    out = {"total": 0, "truncated": 0, "dropped_long": 0, "untrained": 0, "skipped": 0, "filtered": 0,
           "truncated_at": [], "dropped_long_at": [], "untrained_at": []}
    for enc in encoded:
        st = enc.cols["status"]
        first_window = enc.cols["chunk"] == 0
        out["total"] += int(((st != SKIPPED) & (st != FILTERED) & first_window).sum())
        out["skipped"] += int((st == SKIPPED).sum())
        out["filtered"] += int((st == FILTERED).sum())
        for name, code in (("truncated", TRUNCATED), ("dropped_long", DROPPED_LONG),
                           ("untrained", DROPPED_UNTRAINED)):
            where = np.nonzero(st == code)[0]
            out[name] += len(where)
            out[name + "_at"] += [(enc.raw, int(enc.cols["line"][i])) for i in where[:5]]
    return out


def _at(places: list, count: int) -> str:
    if not places:
        return ""
    names = [f"{raw.source} {raw.unit} {line}" for raw, line in places]
    if len({raw.source for raw, _ in places}) == 1:
        raw = places[0][0]
        names = [f"{raw.unit} {line}" for _, line in places]
        head = f"{raw.source} "
    else:
        head = ""
    more = count - len(places)
    return head + ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _count_messages(counts, data_cfg, limit, extra, long_mode) -> list[str]:
    total = counts["total"]
    ml = f"max_length={data_cfg.max_length}" + (f" minus {extra} virtual tokens" if extra else "")
    out = []
    if counts["dropped_long"]:
        out.append(f"{counts['dropped_long']} of {total} examples were longer than {ml} and were dropped "
                   f"({'data.drop_long' if data_cfg.drop_long else 'data.long_examples: drop'}): "
                   f"{_at(counts['dropped_long_at'], counts['dropped_long'])}.")
    elif counts["truncated"]:
        out.append(f"{counts['truncated']} of {total} examples were longer than {ml} and were truncated "
                   f"({_at(counts['truncated_at'], counts['truncated'])}). Raise data.max_length, or set "
                   "data.long_examples: drop to drop them instead (chunk, for plain text, trains all of it).")
    if counts["untrained"]:
        out.append(f"{counts['untrained']} of {total} examples had no answer tokens left to learn from "
                   f"within {limit} tokens and were dropped ({_at(counts['untrained_at'], counts['untrained'])}). "
                   "Raise data.max_length.")
    if counts["filtered"]:
        out.append(f"{counts['filtered']} rows labelled false were not trained (data.columns maps label).")
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

