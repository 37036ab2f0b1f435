"""Typed events and the Reporter protocol: the contract between the engine and its clients.

One JSON object a line, each with ``event`` and ``time`` (DESIGN §2.3):

=============  =============================================================================
``started``    config (resolved), total_params, trainable_params, device, run_dir, total_steps
``step``       step, total_steps, epoch, loss, lr, grad_norm, tokens_per_s, mem_allocated,
               mem_reserved, eta_s, elapsed_s
``eval``       step, eval_loss
``checkpoint`` step, path
``log``        message (level: info)
``warning``    message
``finished``   adapter_dir, run_dir, final metrics
``failed``     error, hint, (traceback only in events.jsonl, never shown raw in the UI)
``stopped``    step, adapter_dir
=============  =============================================================================

Sinks are pluggable (torchtune's metric_logging pattern): JSONL file, stdout, an in-memory
list, or several at once. Only rank 0 of a distributed run reports.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

EVENT_TYPES = ("started", "step", "eval", "checkpoint", "log", "warning", "finished", "failed", "stopped")
TERMINAL_EVENTS = ("finished", "failed", "stopped")


def make_event(kind: str, **fields: Any) -> dict:
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}; valid: {', '.join(EVENT_TYPES)}")
    return {"event": kind, "time": time.time(), **fields}


def _clean(v):
    # JSON has no NaN/inf; a diverged loss must still serialise (as null) rather than crash a run.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def dumps(event: dict) -> str:
    return json.dumps(_clean(event), ensure_ascii=False, default=str)


class Reporter(Protocol):
    def emit(self, event: dict) -> None: ...

    def close(self) -> None: ...


class ListSink:
    """Keeps events in memory (tests, in-process clients)."""

    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]


class JsonlSink:
    """Appends events to a JSON-lines file, flushed and fsynced per line so a kill loses nothing."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def emit(self, event: dict) -> None:
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(dumps(event) + "\n")
            self._fh.flush()
            # fsync only the events that matter after a crash; per-step fsync would cost I/O.
            if event["event"] != "step":
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


class StreamSink:
    """Writes JSON lines to a stream (stdout by default): what the studio's supervisor reads."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def emit(self, event: dict) -> None:
        try:
            self.stream.write(dumps(event) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader went away; the JSONL file still has everything

    def close(self) -> None:
        pass


class CallbackSink:
    def __init__(self, fn):
        self.fn = fn

    def emit(self, event: dict) -> None:
        self.fn(event)

    def close(self) -> None:
        pass


class MultiReporter:
    """Fans one event out to several sinks; a sink that fails does not stop the others."""

    def __init__(self, *sinks):
        self.sinks = [s for s in sinks if s is not None]
        self.enabled = True

    def add(self, sink) -> None:
        self.sinks.append(sink)

    def emit(self, event_or_kind, **fields) -> dict | None:
        if not self.enabled:
            return None
        event = event_or_kind if isinstance(event_or_kind, dict) else make_event(event_or_kind, **fields)
        for s in self.sinks:
            try:
                s.emit(event)
            except Exception as e:  # a broken sink must never kill training
                print(f"peft-studio: event sink {type(s).__name__} failed: {e}", file=sys.stderr)
        return event

    def log(self, message: str) -> None:
        self.emit("log", message=message)

    def warn(self, message: str) -> None:
        self.emit("warning", message=message)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def read_events(path: str | os.PathLike) -> list[dict]:
    """Read an events.jsonl, tolerating a torn last line (the writer may have been killed)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    with open(p, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict) and "event" in ev:
                out.append(ev)
    return out


def parse_event_line(line: str) -> dict | None:
    """Parse one stdout line from an engine process; None for anything that is not an event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return None
    return ev if isinstance(ev, dict) and ev.get("event") in EVENT_TYPES else None
