"""The Data tab's report job (Qt-free; runs in the "data" helper process, studio/tasks.py).

``data_report(state, cfg)`` streams the statistics of EVERY source of the run's data
(``data.sources``, or ``data.path`` alone) as partial results, then the engine's complete report
(``engine.data.data_report``: columns used and ignored with the reason, every record not trained
as written, by line) as the result. The engine's ``iter_statistics`` reads one file; the studio
runs it once per source and adds the snapshots up, so the Data tab never shows the first file's
numbers as the whole mix's.

Partial results (``{"stage": "reading", ...}``) carry ``sources`` (one snapshot per file read
so far, the file being read last) and ``total`` (their sum); the result is ``{"stage": "report",
"report": DataReport.to_dict(), "problems_total": n}`` or ``{"stage": "error", "error", "field"}``
when the data cannot be read at all (the preview job already shows that refusal in detail).
Every answer carries ``task`` (train.task) and ``fits`` (the task the sources serve,
engine.data.task_for_data), for the one-click "Set Training › Task to …". A preference task's
data is read as its run will read it (``preference_report``: ``{"stage": "preference", ...}``);
the SFT statistics do not apply to it.
"""

from __future__ import annotations

import dataclasses

# The report lists every problem by line; the window shows the first ones (a million-row file
# with a bad column would otherwise send megabytes through the job pipe). The count is kept.
MAX_PROBLEMS = 2000
# iter_statistics' step: a snapshot (and a partial result) after this many records.
STATS_EVERY = 2000
# The statistics keep this many problems (and every unreadable record up to as many again) and
# send the first SHOWN_PROBLEMS, unreadable records first.
KEEP_PROBLEMS = 1000
SHOWN_PROBLEMS = 1000
AUTO_REPORT_RECORDS = 20_000
# Above this size the preview reads only the first records (engine.data.preview) instead of the
# whole file (load_records holds every record in Python: minutes and gigabytes for a large file).
LARGE_FILE_BYTES = 2_000_000
PREVIEW_ROWS = 40
_SUM_KEYS = ("records", "examples", "skipped", "filtered", "truncated", "dropped", "duplicates", "tokens",
             "trained")


def source_configs(data_cfg) -> list:
    """One DataConfig per source of ``data_cfg`` (its path, format and columns), for the engine
    functions that read a single file. Raises DataError naming a bad ``data.sources`` entry."""
    from engine.data import source_specs

    return [dataclasses.replace(data_cfg, path=s.path, format=s.format, columns=dict(s.columns), sources=[])
            for s in source_specs(data_cfg)]


def shown_problems(problems: list[dict], n: int = SHOWN_PROBLEMS) -> list[dict]:
    """The problems a snapshot sends: records that cannot be read first (they stop training), then
    the others (truncated, dropped), ``n`` in all, each group in line order."""
    bad = [p for p in problems if p.get("status") == "skipped"][:n]
    return bad + [p for p in problems if p.get("status") != "skipped"][: n - len(bad)]


def is_large(data_cfg) -> bool:
    """Whether the preview should stream: the first source is a file over LARGE_FILE_BYTES (a
    save_to_disk folder or a missing file: no, the whole-file preview handles and explains them)."""
    from pathlib import Path

    from engine.data import DataError, source_specs

    try:
        path = Path(source_specs(data_cfg)[0].path).expanduser()
        return path.is_file() and path.stat().st_size > LARGE_FILE_BYTES
    except (DataError, OSError, IndexError):
        return False


def stream_preview(run_cfg) -> dict:
    """The Data tab's Preview (studio.jobs.Preview as a dict) of a large file from its first
    records only (engine.data.preview: well under a second for any length), ``partial=True``."""
    from studio.jobs import Preview, _tokenizer, jsonable
    from studio.messages import plain_message

    data_cfg, m = run_cfg.data, run_cfg.model
    try:
        tok = _tokenizer(m.name_or_path, m.trust_remote_code, m.offline)
    except Exception as e:  # noqa: BLE001 - the data may be fine; only the rendering needs the tokenizer
        return dataclasses.asdict(Preview(error="The examples cannot be rendered without the model's tokenizer: "
                                          f"{plain_message(e)}", partial=True))
    from engine.data import preview as engine_preview

    pv = engine_preview(data_cfg, tok, n=PREVIEW_ROWS)
    if pv.error:
        field = pv.error_field if isinstance(pv.error_field, str) and pv.error_field.startswith("data.") else ""
        return jsonable(dataclasses.asdict(Preview(error=pv.error, rejected=True, error_field=field,
                                                   columns=list(pv.columns), partial=True)))
    good = [ex for ex in pv.examples if not ex.error]
    bad = [f"{ex.where}: {ex.error}" for ex in pv.examples if ex.error]
    p = Preview(format=pv.format, reason=pv.reason, warnings=list(pv.notes) + bad[:5], n_train=len(good),
                n_skipped=len(bad), columns=list(pv.columns), rows=[ex.segments for ex in good],
                lengths=[ex.length for ex in good], partial=True)
    return jsonable(dataclasses.asdict(p))


def merge_statistics(snapshots: list[dict]) -> dict:
    """The sum of per-source ``Statistics`` dicts: counts added, histograms added bin by bin (every
    source uses the same fixed edges, 0 … 2 × max_length), roles and issues added per key,
    problems concatenated, ``done`` only when every source is done. ``progress``: the mean of the
    sources' fractions, over ``len(snapshots)`` sources."""
    out: dict = {k: 0 for k in _SUM_KEYS}
    out.update(roles={}, issues={}, problems=[], lengths={}, done=bool(snapshots), cancelled=False,
               limit=0, progress=0.0, seconds=0.0)
    for s in snapshots:
        for k in _SUM_KEYS:
            out[k] += int(s.get(k) or 0)
        for key in ("roles", "issues"):
            for name, n in (s.get(key) or {}).items():
                out[key][name] = out[key].get(name, 0) + int(n)
        out["problems"] += list(s.get("problems") or [])
        L = s.get("lengths") or {}
        if L.get("counts"):
            if not out["lengths"]:
                out["lengths"] = {"edges": list(L["edges"]), "counts": list(L["counts"])}
            else:
                out["lengths"]["counts"] = [a + b for a, b in zip(out["lengths"]["counts"], L["counts"])]
        out["done"] = out["done"] and bool(s.get("done"))
        out["cancelled"] = out["cancelled"] or bool(s.get("cancelled"))
        out["limit"] = s.get("limit") or out["limit"]
        out["progress"] += float(s.get("progress") or 0.0) / len(snapshots)
        out["seconds"] += float(s.get("seconds") or 0.0)
    return out


def data_report(state, cfg: dict, with_report: bool | str = "auto") -> dict:
    """What each source is read as (a partial ``{"stage": "plan", "plans"}``), the statistics of
    every source (partials), then the complete report; see the module docstring.
    ``with_report``: True, False (stop after the statistics: the result is their total), or
    "auto" (the report only for data of at most AUTO_REPORT_RECORDS records: preparing a large
    set takes minutes and cannot be interrupted, so the window offers it as a button)."""
    from engine.data import DataError, iter_statistics, task_for_data
    from engine.data import data_report as engine_report
    from engine.data import preview as engine_preview
    from engine.tasks import get_task
    from studio.jobs import _config, _tokenizer, jsonable

    run_cfg = _config(cfg)
    data_cfg, m = run_cfg.data, run_cfg.model
    state.set_status("Loading the tokenizer")
    tok = _tokenizer(m.name_or_path, m.trust_remote_code, m.offline)
    try:
        parts = source_configs(data_cfg)
    except DataError as e:
        return {"stage": "error", "error": str(e), "field": e.field or ""}
    names = [p.path for p in parts]
    # What each source is read as, at once (the first records only): format, columns used and
    # ignored, notes, or why it cannot be trained as configured.
    plans = []
    for part in parts:
        pv = engine_preview(part, tok, n=1).to_dict()
        plans.append({k: pv[k] for k in ("source", "format", "reason", "columns", "columns_used", "columns_ignored",
                                         "notes", "template", "error", "error_field", "detected")})
    # The task the data serves (the one-click "Set Training › Task to …"), beside the task set.
    task = {"task": run_cfg.train.task, "fits": task_for_data([source_kind(p) for p in plans])}
    if get_task(run_cfg.train.task).is_preference:  # the plans read the files as SFT: not shown for a preference task
        return jsonable({**preference_report(state, run_cfg, tok), "plans": plans, "names": names, **task})
    state.set_partial_result(jsonable({"stage": "plan", "plans": plans, "names": names, **task}))
    refused = next((p for p in plans if p["error"]), None)
    if refused is not None:
        return jsonable({"stage": "error", "error": refused["error"], "field": refused["error_field"] or "",
                         "source": refused["source"], "detected": refused["detected"], "plans": plans,
                         "names": names, **task})
    done: list[dict] = []
    cancel = state.as_event()
    for i, part in enumerate(parts):
        state.set_status(f"Reading {names[i]}" + (f" (source {i + 1} of {len(parts)})" if len(parts) > 1 else ""))
        last = None
        try:
            for snap in iter_statistics(part, tok, every=STATS_EVERY, cancel=cancel, keep_problems=KEEP_PROBLEMS):
                last = dict(snap.to_dict(), source=names[i])
                last["problems"] = shown_problems(last["problems"])
                shown = [*done, last]
                total = merge_statistics(shown + [{} for _ in names[len(shown):]])
                state.set_progress_value(total["progress"], 1.0)
                state.set_partial_result(jsonable({"stage": "reading", "sources": shown, "total": total,
                                                   "names": names}))
        except DataError as e:
            return {"stage": "error", "error": str(e), "field": e.field or "", "source": names[i]}
        if state.is_interruption_requested():
            return {"stage": "cancelled"}
        done.append(last or {"source": names[i], "done": True})
    total = merge_statistics(done)
    if not with_report or (with_report == "auto" and total["records"] > AUTO_REPORT_RECORDS):
        return jsonable({"stage": "statistics", "sources": done, "total": total, "names": names, "plans": plans,
                         **task})
    state.set_status("Preparing the data (the complete report; training will reuse it)")
    state.set_progress_value(None)
    try:
        report = engine_report(data_cfg, tok, seed=run_cfg.train.seed)
    except DataError as e:
        return {"stage": "error", "error": str(e), "field": e.field or ""}
    d = report.to_dict()
    n = len(d["problems"])
    d["problems"] = d["problems"][:MAX_PROBLEMS]
    for issue in d["issues"].values():
        issue["rows"] = issue["rows"][:MAX_PROBLEMS]
    d["duplicates"]["groups"] = d["duplicates"].get("groups", [])[:200]
    return jsonable({"stage": "report", "report": d, "problems_total": n, "statistics": total,
                     "sources": done, "names": names, "plans": plans, **task})


def source_kind(plan: dict) -> str | None:
    """What one source's plan (engine.data.preview's first-record reading) says the file holds:
    ``paired`` or ``unpaired`` preference data, ``sft`` examples, or None (it cannot be read)."""
    if plan.get("detected"):
        return plan["detected"].get("task")
    return "sft" if plan.get("format") and not plan.get("error") else None


def preference_report(state, run_cfg, tok) -> dict:
    """A preference task's report (train.task dpo, orpo, kto, simpo): the data read as the run will
    (engine.data.prepare_preference_data: every source, the mix, the held-out rows), as
    ``{"stage": "preference", "preference": PreferenceReport.to_dict(), "lines", "train", "eval"}``,
    or ``{"stage": "error", ...}`` naming the file and field when it cannot serve the task. The
    SFT statistics and report do not apply: TRL tokenizes the pairs itself."""
    from engine.data import DataError, prepare_preference_data
    from engine.tasks import get_task

    task = get_task(run_cfg.train.task)
    state.set_status(f"Reading the preference data for {task.title}")
    try:
        data = prepare_preference_data(run_cfg.data, task.data, tok, seed=run_cfg.train.seed)
    except DataError as e:
        return {"stage": "error", "error": str(e), "field": e.field or "", "source": e.file or ""}
    rep = data.report
    return {"stage": "preference", "preference": rep.to_dict(), "lines": rep.lines(), "train": len(data.train),
            "eval": len(data.eval) if data.eval is not None else 0}


JOBS = {"data_report": data_report}
