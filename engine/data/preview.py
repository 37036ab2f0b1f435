"""For the studio's Data tab: a fast preview, progressive statistics, and the full report.

* ``preview(data_cfg, tokenizer, n=20)`` reads only the first records of the file (a stream:
  the first lines of a .jsonl, the first elements of a .json array, the first batch of a
  .parquet), detects the format on them and renders each with its trained segments. It returns in
  well under a second for a file of any length (measured in tests/engine/test_data_preview.py).
* ``iter_statistics(data_cfg, tokenizer, every=2000, cancel=None)`` reads on, ``every`` records at
  a time, and yields a growing ``Statistics`` after each step: counts, the token-length histogram,
  problems by line, roles, issues. It runs in the caller's thread, in one process; stop it by
  breaking out of the loop or with ``cancel`` (a callable or threading.Event), checked between
  steps. The last snapshot has ``done=True``.
* ``data_report(data_cfg, tokenizer)`` is prepare_data's complete report (report.DataReport),
  with every problem listed instead of the first one raised; it fills the data cache, so a
  training run afterwards starts at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from engine.data.detect import plan_format
from engine.data.encode import IGNORE_INDEX, ROLE_COLUMNS, analyse
from engine.data.errors import DataError, Where
from engine.data.formats import NormOptions, label_of, normalize
from engine.data.readers import iter_rows
from engine.data.render import render, segments, template_caps, tokenize_rendered

_DETECT_ROWS = 200   # records read for format detection before the first example shows


@dataclass
class PreviewExample:
    """One record as it will be trained: ``segments`` [(text, trained)], ``length`` in tokens
    (before truncation), or ``error`` (the DataError's message) when it cannot be used."""

    where: str                       # "line 3" / "record 3"
    line: int | None
    record: int | None
    segments: list = field(default_factory=list)
    length: int = 0
    trained_tokens: int = 0
    error: str = ""
    issues: list = field(default_factory=list)


@dataclass
class Preview:
    """The first examples of a data file. ``error`` (and ``detected``, a PreferenceShape dict for
    preference data) when the file cannot be trained as configured; ``columns`` are there even
    then, so the user can map them. ``read_fraction``: how much of the file was read."""

    source: str = ""
    format: str = ""
    reason: str = ""
    columns: list = field(default_factory=list)
    columns_used: list = field(default_factory=list)
    columns_ignored: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    template: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    error: str = ""
    error_field: str | None = None
    detected: dict | None = None
    read_fraction: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _first_source(data_cfg):
    from engine.data.pipeline import source_specs

    return source_specs(data_cfg)[0]


def preview(data_cfg, tokenizer=None, n: int = 20, base_dir=None) -> Preview:
    """The first ``n`` records of data.path (or the first of data.sources) as trained; see the
    module docstring. Never raises DataError: problems are in ``.error`` / each example's ``error``."""
    t0 = time.perf_counter()
    spec = _first_source(data_cfg)
    out = Preview(source=spec.path)
    rows = []
    try:
        for r in iter_rows(spec.path, base_dir, getattr(data_cfg, "sample_by", "document")):
            rows.append(r)
            out.read_fraction = r.progress
            if len(rows) >= max(n, _DETECT_ROWS):
                break
        sample = [r.row for r in rows if r.row is not None]
        out.columns = list(dict.fromkeys(str(k) for row in sample for k in row))
        if not sample:
            raise rows[0].error if rows else DataError("the file is empty (no records)", file=spec.path)
        caps = template_caps(tokenizer) if tokenizer is not None else None
        plan = plan_format(spec.format, out.columns, sample, spec.columns, spec.path, caps,
                           bool(data_cfg.skip_bad_lines))
    except DataError as e:
        out.error, out.error_field = str(e), e.field
        out.detected = e.detected.to_dict() if e.detected is not None else None
        out.seconds = time.perf_counter() - t0
        return out
    out.format, out.reason = plan.format, plan.reason
    out.columns_used, out.columns_ignored, out.notes = plan.used, plan.ignored, list(plan.notes)
    out.template = caps.notes() if caps is not None else []
    opts = NormOptions(caps.part_separator if caps is not None else "")
    for r in rows[:n]:
        ex = PreviewExample(str(r.where), r.where.line, r.where.record)
        out.examples.append(ex)
        if r.error is not None:
            ex.error = str(r.error)
            continue
        try:
            record = normalize(r.row, plan, r.where, opts)
            _, ex.issues = analyse(record)
            if label_of(r.row, plan, r.where) is False:
                ex.error = "labelled false: not trained (data.columns maps label)"
                continue
            if tokenizer is not None:
                rendered = render(record, tokenizer, data_cfg, r.where, caps)
                enc = tokenize_rendered([rendered], tokenizer)[0]
                ex.segments = segments(rendered, enc, tokenizer)
                ex.length = len(enc.ids)
                ex.trained_tokens = sum(enc.flags)
        except DataError as e:
            ex.error = str(e)
    out.seconds = time.perf_counter() - t0
    return out


@dataclass
class Statistics:
    """A snapshot of the statistics so far (see iter_statistics). Lists hold plain values.

    ``records``: records read; ``progress``: fraction of the file read (bytes or records);
    ``examples``/``skipped``/``filtered``/``truncated``/``dropped``: counts so far, against
    ``limit`` tokens (max_length); ``lengths``: histogram {edges, counts} of tokens per record
    (fixed edges for the whole run: 0 … max_length × 2 in 40 bins, plus one "longer" bin at the
    end); ``roles``: turns per role; ``issues``: {code: count}; ``duplicates``: count;
    ``problems``: [{where, status, reason}] (the first ``keep_problems``); ``tokens``/``trained``;
    ``done``: the whole file was read; ``cancelled``: stopped early; ``seconds``: time so far.
    """

    records: int = 0
    progress: float = 0.0
    examples: int = 0
    skipped: int = 0
    filtered: int = 0
    truncated: int = 0
    dropped: int = 0
    limit: int = 0
    lengths: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    issues: dict = field(default_factory=dict)
    duplicates: int = 0
    problems: list = field(default_factory=list)
    tokens: int = 0
    trained: int = 0
    done: bool = False
    cancelled: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def iter_statistics(data_cfg, tokenizer, every: int = 2000, cancel=None, base_dir=None,
                    keep_problems: int = 1000) -> Iterator[Statistics]:
    """Statistics of data.path (or the first of data.sources), growing as the file is read; see
    the module docstring. Raises DataError only when the format cannot be decided at all."""
    import numpy as np

    t0 = time.perf_counter()
    spec = _first_source(data_cfg)
    limit = int(data_cfg.max_length)
    long_mode = "drop" if data_cfg.drop_long else (getattr(data_cfg, "long_examples", "truncate") or "truncate")
    caps = template_caps(tokenizer)
    opts = NormOptions(caps.part_separator)
    edges = np.linspace(0, 2 * limit, 41)
    hist = np.zeros(41, dtype=np.int64)  # the last bin: longer than 2 × max_length
    st = Statistics(limit=limit, roles=dict.fromkeys(ROLE_COLUMNS, 0))
    seen: set[int] = set()
    rows_iter = iter_rows(spec.path, base_dir, getattr(data_cfg, "sample_by", "document"))
    head = []
    for r in rows_iter:
        head.append(r)
        if len(head) >= _DETECT_ROWS:
            break
    sample = [r.row for r in head if r.row is not None]
    if not sample:
        if head:
            raise head[0].error
        raise DataError("the file is empty (no records)", file=spec.path)
    columns = list(dict.fromkeys(str(k) for row in sample for k in row))
    plan = plan_format(spec.format, columns, sample, spec.columns, spec.path, caps, bool(data_cfg.skip_bad_lines))

    def rows():
        yield from head
        yield from rows_iter

    def problem(where: Where, status: str, reason: str):
        # Unreadable records stop a run without data.skip_bad_lines: they are kept even after
        # truncated ones filled the list (a file of long texts would hide a bad line at 25,000).
        if len(st.problems) < keep_problems or (status == "skipped" and st.skipped <= keep_problems):
            st.problems.append({"where": f"{where.file} {where}", "line": where.line, "record": where.record,
                                "status": status, "reason": reason})

    def snapshot(done=False, cancelled=False) -> Statistics:
        st.lengths = {"edges": [float(e) for e in edges], "counts": hist.tolist()}
        st.done, st.cancelled, st.seconds = done, cancelled, time.perf_counter() - t0
        return Statistics(**{**asdict(st), "problems": list(st.problems)})

    from engine.data.encode import _hash

    batch: list = []

    def flush():
        pending = []
        for r in batch:
            st.records += 1
            st.progress = r.progress
            if r.error is not None:
                st.skipped += 1
                problem(r.where, "skipped", r.error.problem)
                continue
            try:
                record = normalize(r.row, plan, r.where, opts)
                counts, issues = analyse(record)
                for role, k in counts.items():
                    st.roles[role] = st.roles.get(role, 0) + k
                for item in issues:
                    code = item.split("|", 1)[0]
                    st.issues[code] = st.issues.get(code, 0) + 1
                h = _hash(record)
                if h in seen:
                    st.duplicates += 1
                seen.add(h)
                if label_of(r.row, plan, r.where) is False:
                    st.filtered += 1
                    continue
                pending.append((r.where, render(record, tokenizer, data_cfg, r.where, caps)))
            except DataError as e:
                st.skipped += 1
                problem(r.where, "skipped", e.problem)
        if pending:
            for (where, _), enc in zip(pending, tokenize_rendered([p for _, p in pending], tokenizer,
                                                                  want_offsets=False)):
                n = len(enc.ids)
                hist[min(int(np.searchsorted(edges, n, side="right")) - 1, 40)] += 1
                flags = enc.flags[:limit] if long_mode == "truncate" else enc.flags
                if n > limit and long_mode == "drop":
                    st.dropped += 1
                    problem(where, "dropped_long", f"{n} tokens, over the limit of {limit}")
                    continue
                if long_mode != "chunk" and not any(flags[1:]):
                    st.dropped += 1
                    problem(where, "dropped_untrained", f"no answer token within {limit} tokens")
                    continue
                if n > limit and long_mode == "truncate":
                    st.truncated += 1
                    problem(where, "truncated", f"{n} tokens, truncated to {limit}")
                st.examples += 1
                st.tokens += min(n, limit) if long_mode == "truncate" else n
                st.trained += sum(flags)
        batch.clear()

    for r in rows():
        batch.append(r)
        if len(batch) >= every:
            flush()
            if _cancelled(cancel):
                yield snapshot(cancelled=True)
                return
            yield snapshot()
    flush()
    yield snapshot(done=True)


def data_report(data_cfg, tokenizer, seed: int = 42, base_dir=None, extra_prompt_tokens: int = 0,
                reporter=None, num_proc: int | None = None):
    """The complete data report (report.DataReport) of the run's data: prepare_data with every bad
    record listed rather than the first raised. Raises DataError only for what stops reading at
    all (a missing file, an undecidable format, preference data that is not mapped)."""
    from engine.data.pipeline import prepare_data

    prepared = prepare_data(data_cfg, tokenizer, seed=seed, reporter=reporter, base_dir=base_dir,
                            extra_prompt_tokens=extra_prompt_tokens, num_proc=num_proc, strict=False)
    return prepared.report


__all__ = ["IGNORE_INDEX", "Preview", "PreviewExample", "Statistics", "data_report", "iter_statistics", "preview"]
