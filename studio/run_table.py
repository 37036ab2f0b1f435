"""What the Runs tab, the run pickers and the comparison read about runs on disk (Qt-free; run in a
worker thread): one row per run, the curves of a run, and the config fields that differ.

Everything comes from each run folder (``events.jsonl``, ``run.yaml``) through the engine's
public readers, so a run is described the same way whether it finished, failed before its first
step, or is still training. The engine's run index is only used to find run folders.
"""

from __future__ import annotations

from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.events import TERMINAL_EVENTS, read_events
from engine.runs import RunIndex, summarize

REASON_CHARS = 160


def _first_sentence(text: str) -> str:
    text = " ".join(str(text or "").split())
    for end in (". ", "; "):
        if end in text:
            text = text.split(end, 1)[0] + end.strip()
            break
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def run_config(run_dir: str | Path, events: list[dict] | None = None) -> dict:
    """The run's resolved config as a dict: the ``started`` event's, else its run.yaml (a run that
    failed before it started still says what it was), else {}."""
    events = read_events(Path(run_dir) / "events.jsonl") if events is None else events
    started = next((e for e in events if e.get("event") == "started" and e.get("config")), None)
    if started is not None:
        return dict(started["config"])
    path = Path(run_dir) / "run.yaml"
    if path.exists():
        try:
            return RunConfig.load(path).to_dict()
        except (ConfigError, OSError):
            return {}
    return {}


def training_seconds(events: list[dict]) -> float | None:
    """Time spent training, summed over the run's parts (a resumed run does not count its pause):
    each ``started`` to the last event before the next ``started`` (seconds; None: no events)."""
    total, start, last = 0.0, None, None
    for ev in events:
        t = ev.get("time")
        if not isinstance(t, (int, float)):
            continue
        if ev.get("event") == "started":
            if start is not None and last is not None:
                total += max(0.0, last - start)
            start = t
        last = t
    if start is not None and last is not None:
        total += max(0.0, last - start)
    return total if start is not None else None


def status_reason(summary: dict, events: list[dict]) -> str:
    """Why a run ended as it did, in a few words ('' for a finished or running one)."""
    status = summary.get("status")
    terminal = next((e for e in reversed(events) if e.get("event") in TERMINAL_EVENTS), None)
    if status == "failed":
        return _first_sentence((terminal or {}).get("error") or summary.get("error") or "it failed")
    if status == "stopped":
        return str((terminal or {}).get("reason") or "stop requested")
    if status == "crashed":
        return "the engine ended without saying why (killed, or out of memory)"
    return ""


def run_row(run_dir: str | Path) -> dict:
    """One run as the Runs tab lists it: name, status and its reason, method, model, data file,
    steps, final and eval loss, duration, start time, and the config (for the comparison)."""
    run_dir = Path(run_dir)
    events = read_events(run_dir / "events.jsonl")
    try:
        row = summarize(run_dir)
    except Exception:  # noqa: BLE001 - an unreadable folder is still listed, as unknown
        row = {"run_dir": str(run_dir.resolve()), "name": run_dir.name, "status": "?"}
    cfg = run_config(run_dir, events)
    row["config"] = cfg
    row["method"] = row.get("method") or (cfg.get("method") or {}).get("name")
    row["model"] = row.get("model") or (cfg.get("model") or {}).get("name_or_path")
    data = (cfg.get("data") or {}).get("path") or ""
    row["data"] = Path(data).name if data else ""
    row["data_path"] = data
    row["duration"] = training_seconds(events)
    row["reason"] = status_reason(row, events)
    return row


def load_runs(state, recent: list[str], limit: int = 50) -> list[dict]:
    """Task: rows for the run list, newest first: the runs the engine's index knows and the
    studio's recent list (each described from its own folder)."""
    dirs: dict[str, str] = {}
    try:
        for r in RunIndex().list(limit, refresh=False):
            dirs.setdefault(str(Path(r["run_dir"]).resolve()), r["run_dir"])
    except Exception:  # noqa: BLE001 - a locked or corrupt index must not hide the recent list
        pass
    for d in recent:
        if Path(d).exists():
            dirs.setdefault(str(Path(d).resolve()), d)
    rows = []
    for key in dirs:
        if state is not None and state.is_interruption_requested():
            break
        if (Path(key) / "events.jsonl").exists() or (Path(key) / "run.yaml").exists():
            rows.append(run_row(key))
    return sorted(rows, key=lambda r: r.get("started") or 0, reverse=True)[:limit]


def curves(run_dir: str | Path) -> dict:
    """The curves a comparison overlays: ``{"loss": [steps, values], "eval_loss": …, "lr": …}``
    (a resumed run's repeated steps keep their newest values)."""
    out: dict[str, dict[int, float]] = {"loss": {}, "eval_loss": {}, "lr": {}}
    for ev in read_events(Path(run_dir) / "events.jsonl"):
        kind, step = ev.get("event"), ev.get("step")
        if step is None:
            continue
        if kind == "step":
            for key, field in (("loss", "loss"), ("lr", "lr")):
                if ev.get(field) is not None:
                    out[key][int(step)] = float(ev[field])
        elif kind == "eval" and ev.get("eval_loss") is not None:
            out["eval_loss"][int(step)] = float(ev["eval_loss"])
    return {k: [sorted(v), [v[s] for s in sorted(v)]] for k, v in out.items()}


def load_compare(state, run_dirs: list[str]) -> list[dict]:
    """Task: for each run, ``{run_dir, name, curves, config}``."""
    out = []
    for d in run_dirs:
        if state is not None and state.is_interruption_requested():
            break
        out.append({"run_dir": d, "name": Path(d).name, "curves": curves(d), "config": run_config(d)})
    return out


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """``{"train": {"lr": 1e-3}}`` → ``{"train.lr": 1e-3}`` (lists and values kept as they are)."""
    out: dict[str, object] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and k != "columns":
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


# Fields that differ between any two runs and say nothing about what was trained.
_NOT_SETTINGS = ("output_dir", "train.resume_from")


def config_diff(configs: list[dict]) -> list[tuple[str, list]]:
    """The config fields whose values differ between ``configs``, each with every run's value
    (None where a run's method has no such field), in the run file's order."""
    flat = [flatten(c) for c in configs]
    keys: list[str] = []
    for f in flat:
        keys.extend(k for k in f if k not in keys)
    rows = []
    for key in keys:
        if key in _NOT_SETTINGS:
            continue
        values = [f.get(key) for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows
