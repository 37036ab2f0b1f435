"""Run directories and the run index (SQLite).

A run directory is the source of truth: run.yaml (resolved config), events.jsonl, checkpoints/,
adapter/. The index is a cache over run directories for fast listing; `RunIndex.record(dir)`
(re)derives a row from the directory's files, so a crash or kill never leaves the index
disagreeing with what is on disk for long: the next record or rescan fixes it.

Besides status and losses a row keeps what the run's evaluation found: the forgetting check
(the finished event's ``forgetting``, or ``forgetting.json`` that ``peft-studio eval`` writes)
and the best state by the early-stopping metric. Imported runs (``peft-studio runs import``) are
marked ``imported``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from engine.events import TERMINAL_EVENTS, read_events
from engine.paths import run_index_path

FORGETTING_FILE = "forgetting.json"   # written by `peft-studio eval RUN` (engine.cli.eval)
RUN_FILE = "run.yaml"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
ADAPTER_CONFIG = "adapter_config.json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_dir    TEXT PRIMARY KEY,
    name       TEXT,
    model      TEXT,
    method     TEXT,
    status     TEXT,
    started    REAL,
    finished   REAL,
    steps      INTEGER,
    final_loss REAL,
    eval_loss  REAL,
    adapter    TEXT,
    updated    REAL
)
"""
# Columns added after the first release: an index written by an older version gains them on open.
ADDED_COLUMNS = {"forgetting": "TEXT", "best_metric": "TEXT", "best_value": "REAL", "best_step": "INTEGER",
                 "imported": "INTEGER"}
COLUMNS = ["run_dir", "name", "model", "method", "status", "started", "finished", "steps", "final_loss",
           "eval_loss", "adapter", *ADDED_COLUMNS]


def has_adapter(folder: str | os.PathLike) -> bool:
    """A saved adapter folder (``adapter_config.json``, peft's or ours), or the complete model
    folder a full fine-tune saves instead."""
    from engine.methods.storage import is_model_folder

    p = Path(folder)
    return (p / ADAPTER_CONFIG).exists() or is_model_folder(p)


def _step(p: Path) -> int:
    tail = p.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def checkpoint_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The run's checkpoints that hold an adapter, oldest first (``checkpoints/checkpoint-N``)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted((c for c in root.glob("checkpoint-*") if has_adapter(c)), key=_step)


def final_adapter(run_dir: str | os.PathLike) -> Path | None:
    """What a run folder's "final" adapter is: ``adapter/`` when the run saved it, else its
    newest checkpoint (a run killed before saving); None when it has neither. The one rule
    export, the playground and ``method.from_adapter`` share."""
    adapter = Path(run_dir) / ADAPTER_DIR
    if has_adapter(adapter):
        return adapter
    ckpts = checkpoint_dirs(run_dir)
    return ckpts[-1] if ckpts else None


def is_run_folder(folder: str | os.PathLike) -> bool:
    """A PEFT Studio run folder (it holds ``run.yaml``)."""
    return (Path(folder) / RUN_FILE).is_file()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def read_forgetting(run_dir: Path, terminal: dict | None) -> dict | None:
    """The run's forgetting check: its terminal event's, else a later ``peft-studio eval``'s."""
    if terminal and terminal.get("forgetting"):
        return terminal["forgetting"]
    try:
        return json.loads((Path(run_dir) / FORGETTING_FILE).read_text(encoding="utf-8")).get("forgetting")
    except (OSError, ValueError, AttributeError):
        return None


def summarize(run_dir: str | os.PathLike) -> dict:
    """What a run directory says about itself: status, progress, final numbers, forgetting and
    the best state (``forgetting`` is the dict of FinishedEvent.forgetting, or None)."""
    run_dir = Path(run_dir)
    events = read_events(run_dir / "events.jsonl")
    started = next((e for e in events if e["event"] == "started"), None)
    terminal = next((e for e in reversed(events) if e["event"] in TERMINAL_EVENTS), None)
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval"]
    cfg = (started or {}).get("config") or {}
    if terminal is not None and (started is None or terminal["time"] >= started["time"]):
        status = terminal["event"]
    elif started is not None:
        status = "running" if pid_alive(started.get("pid")) else "crashed"
    else:
        status = "failed" if terminal else ("empty" if not events else "starting")
    metrics = (terminal or {}).get("metrics") or {}
    imported = bool((started or {}).get("imported"))
    return {
        "run_dir": str(run_dir.resolve()),
        "name": run_dir.name,
        "model": (cfg.get("model") or {}).get("name_or_path"),
        "method": (cfg.get("method") or {}).get("name"),
        "status": "imported" if imported else status,
        "started": (started or (events[0] if events else {})).get("time"),
        "finished": terminal["time"] if terminal else None,
        "steps": steps[-1]["step"] if steps else 0,
        "final_loss": metrics.get("final_loss", steps[-1].get("loss") if steps else None),
        "eval_loss": metrics.get("eval_loss", evals[-1]["eval_loss"] if evals else None),
        "adapter": (terminal or {}).get("adapter_dir"),
        "error": (terminal or {}).get("error") if status == "failed" else None,
        "forgetting": read_forgetting(run_dir, terminal),
        "best_metric": metrics.get("best_metric"),
        "best_value": metrics.get("best_value"),
        "best_step": metrics.get("best_step"),
        "imported": imported,
    }


class RunIndex:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else run_index_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(SCHEMA)
            have = {r["name"] for r in db.execute("PRAGMA table_info(runs)")}
            for col, kind in ADDED_COLUMNS.items():
                if col not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")

    def _connect(self):
        # WAL + a busy timeout: the studio reads while an engine process writes.
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.row_factory = sqlite3.Row
        return db

    def record(self, run_dir: str | os.PathLike) -> dict:
        row = summarize(run_dir)
        values = [json.dumps(row[c]) if c == "forgetting" and row[c] is not None else row[c] for c in COLUMNS]
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}, updated) VALUES "
                       f"({', '.join('?' * len(COLUMNS))}, ?)", values + [time.time()])
        return row

    def list(self, limit: int = 100, refresh: bool = True) -> list[dict]:
        with self._connect() as db:
            rows = [_row(r) for r in db.execute(
                "SELECT * FROM runs ORDER BY COALESCE(started, updated) DESC LIMIT ?", (limit,))]
        out = []
        for r in rows:
            if not Path(r["run_dir"]).exists():
                continue  # deleted by hand; keep the row, hide it
            if refresh and r["status"] in ("running", "starting"):
                r = {**r, **self.record(r["run_dir"])}
            out.append(r)
        return out

    def forget(self, run_dir: str | os.PathLike) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE run_dir = ?", (str(Path(run_dir).resolve()),))


def _row(r: sqlite3.Row) -> dict:
    d = dict(r)
    if d.get("forgetting"):
        try:
            d["forgetting"] = json.loads(d["forgetting"])
        except ValueError:
            d["forgetting"] = None
    d["imported"] = bool(d.get("imported"))
    return d
