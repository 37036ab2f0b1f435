"""Run folders and the run file the engine child gets: absolute paths, a fresh output folder, resume."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from engine.config import RunConfig
from engine.events import read_events
from studio.config_model import find_path


def requests_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".peft-studio") / "requests"


def fresh_dir(out: Path) -> Path:
    """``out`` if it is unused, else ``out-2``, ``out-3``… (never mix two runs' events)."""
    if not out.exists() or not any(out.iterdir()):
        return out
    i = 2
    while True:
        cand = out.with_name(f"{out.name}-{i}")
        if not cand.exists() or not any(cand.iterdir()):
            return cand
        i += 1


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    ckpt = Path(run_dir) / "checkpoints"
    return ckpt.is_dir() and any((c / "trainer_state.json").exists() for c in ckpt.glob("checkpoint-*"))


def completed_steps(run_dir: str | os.PathLike) -> int | None:
    """The step a run folder's run finished at when it ran to its end (its last ``finished``
    event came after its last ``started`` and reached the planned total), else None."""
    events = read_events(Path(run_dir) / "events.jsonl")
    started = [e for e in events if e.get("event") == "started"]
    finished = [e for e in events if e.get("event") == "finished"]
    if not started or not finished or finished[-1].get("time", 0) < started[-1].get("time", 0):
        return None
    done, total = int(finished[-1].get("step") or 0), int(started[-1].get("total_steps") or 0)
    return done if total and done >= total else None


def prepare_run(cfg: RunConfig, resume: bool = False, cwd: Path | None = None) -> tuple[RunConfig, Path]:
    """The config as the engine child will get it, and the run file written for it.

    The run file lives in the studio's data folder, so every relative path is made absolute
    here (the engine would resolve them against the run file's folder).
    """
    cwd = cwd or Path.cwd()
    d = cfg.to_dict()
    out = Path(d["output_dir"]).expanduser()
    if not out.is_absolute():
        out = cwd / out
    if resume:
        d["train"]["resume_from"] = d["train"].get("resume_from") or "latest"
    else:
        out = fresh_dir(out)
        if d["train"].get("resume_from") == "latest":
            d["train"]["resume_from"] = None  # "latest" of a brand-new folder would fail
    d["output_dir"] = str(out)
    for section, key in (("data", "path"), ("data", "validation_path"), ("model", "name_or_path")):
        value = d[section].get(key)
        if value and value != "demo" and not Path(value).is_absolute():
            found = find_path(value)
            if found is not None:
                d[section][key] = str(found.resolve())
    run_cfg = RunConfig.from_dict(d, "the studio")
    target = requests_dir() / f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    run_cfg.save(target)
    return run_cfg, target


def display_path(path: str) -> str:
    """Relative to the current folder when inside it (shorter in the form), else absolute."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def last_pid(run_dir: str | os.PathLike) -> int:
    """The engine process id recorded in the run's last ``started`` event (0 if none)."""
    for ev in reversed(read_events(Path(run_dir) / "events.jsonl")):
        if ev.get("event") == "started":
            try:
                return int(ev.get("pid") or 0)
            except (TypeError, ValueError):
                return 0
    return 0
