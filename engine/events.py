"""Typed events and the Reporter protocol: the contract between the engine and its clients.

A training run reports one JSON object a line (DESIGN §2.3), on stdout when piped and in
``<run>/events.jsonl``. Each object has ``event`` (its kind) and ``time``; the rest are the
fields of that kind's dataclass below, one class per kind. Every numeric field states its unit
(``metadata["unit"]``, repeated in the class docstring), and ``docs/architecture.md``'s event
table is generated from these classes (:func:`contract_markdown`), so the documentation cannot
drift from what is emitted.

Fields are all optional on the wire: an emitter sends what it knows (the trainer sends every
field marked *always*; tests and stand-ins send fewer) and a reader uses ``.get``. A field that
was not given is left out of the JSON; a field given as ``None`` is written as ``null``, and so
is a float that is not finite (JSON has no NaN: a diverged loss must not crash a run). An
unknown field name is an error when emitting (the contract is closed) and is kept in ``extra``
when reading (an engine newer than its reader must not break it).

Sinks are pluggable (torchtune's metric_logging pattern): JSONL file, stdout, an in-memory
list, a callback, or several at once. Only rank 0 of a distributed run reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol


class _Unset:
    """The default of every payload field: "not given", left out of the JSON (unlike None)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


def _f(help: str, unit: str | None = None, always: bool = True):
    """A payload field: its meaning, its unit (every number has one) and whether a training run
    always sends it."""
    return field(default=UNSET, metadata={"help": help, "unit": unit, "always": always})


@dataclass(kw_only=True)
class Event:
    """Base of every event: ``event`` (the kind) and ``time``."""

    KIND: ClassVar[str] = ""
    time: float = field(default_factory=time.time, metadata={
        "help": "When the event was emitted.", "unit": "seconds since the Unix epoch", "always": True})
    extra: dict = field(default_factory=dict, metadata={"help": "Fields this engine does not know (read only).",
                                                         "internal": True})

    def to_dict(self) -> dict:
        """The JSON object (``event`` and ``time`` first; fields not given left out)."""
        out: dict[str, Any] = {"event": self.KIND, "time": self.time}
        for f in payload_fields(type(self)):
            v = getattr(self, f.name)
            if v is not UNSET:
                out[f.name] = v
        out.update(self.extra)
        return out

    @staticmethod
    def from_dict(d: dict) -> Event:
        """The typed event of a JSON object (raises ValueError for an unknown kind)."""
        klass = event_class(d.get("event"))
        names = {f.name for f in payload_fields(klass)}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in ("event", "time")}
        return klass(time=d.get("time") or 0.0, extra=extra, **known)


def payload_fields(klass) -> list[dataclasses.Field]:
    """The fields of an event class beyond ``time`` (and the internal ``extra``)."""
    return [f for f in dataclasses.fields(klass) if f.name != "time" and not f.metadata.get("internal")]


EVENT_CLASSES: dict[str, type[Event]] = {}


def _event(kind: str):
    """Register an event class under ``kind`` and append its field table (units included) to its
    docstring, so ``help(StepEvent)`` says what each number is measured in."""

    def deco(klass):
        klass.KIND = kind
        lines = [(klass.__doc__ or "").rstrip(), "", "Fields:"]
        for f in [*(g for g in dataclasses.fields(klass) if g.name == "time"), *payload_fields(klass)]:
            unit = f" [{f.metadata['unit']}]" if f.metadata.get("unit") else ""
            lines.append(f"    {f.name}{unit}: {f.metadata['help']}")
        klass.__doc__ = "\n".join(lines)
        EVENT_CLASSES[kind] = klass
        return klass

    return deco


@_event("started")
@dataclass(kw_only=True)
class StartedEvent(Event):
    """The run has loaded its model and data and is about to take its first step."""

    config: dict = _f("The resolved run file (RunConfig.to_dict()).")
    total_params: int = _f("Parameters of the base model (tied weights once).", "parameters")
    trainable_params: int = _f("Parameters the method trains.", "parameters")
    device: str = _f("Where it trains: `cuda` or `cpu`.")
    run_dir: str = _f("The run folder.")
    method: str = _f("The method's name (method.name).")
    quantization: str | None = _f("How the frozen base is stored: null, nf4, fp4 or int8.")
    train_examples: int = _f("Training examples after preparation.", "examples")
    eval_examples: int = _f("Held-out examples (0: no evaluation).", "examples")
    data_format: str = _f("The data format detected or chosen (data.format).")
    pid: int = _f("The training process's id, to tell a running run from a crashed one.", "process id")
    total_steps: int = _f("Optimizer steps the run will take.", "optimizer steps")
    resumed_from_step: int = _f("The step a resumed run continues from (0: a fresh run).", "optimizer steps")
    strategy: str = _f("train.distributed.strategy: single, ddp, fsdp or deepspeed.")
    world_size: int = _f("Processes training together (1: a single process); only rank 0 reports.",
                         "processes")
    distributed_type: str = _f("What accelerate set up: NO, MULTI_CPU, MULTI_GPU, FSDP or DEEPSPEED (a run "
                               "asking for FSDP that is not sharded shows here).")


@_event("step")
@dataclass(kw_only=True)
class StepEvent(Event):
    """An optimizer step was logged (every train.logging_steps steps)."""

    step: int = _f("Optimizer steps done.", "optimizer steps")
    total_steps: int = _f("Optimizer steps the run will take.", "optimizer steps")
    epoch: float = _f("Passes over the training data so far (fractional).", "epochs")
    loss: float | None = _f("Training loss: mean cross-entropy per labelled token, averaged over the "
                            "steps since the last step event (null when not finite).", "nats per token")
    lr: float | None = _f("Learning rate this optimizer step used.", "dimensionless")
    grad_norm: float | None = _f("Gradient L2 norm before clipping.", "dimensionless (L2 norm)")
    tokens_per_s: float | None = _f("Non-padding tokens processed per second since this process "
                                    "started training.", "tokens per second")
    trained_tokens: int = _f("Tokens that carried loss, since this process started training.", "tokens")
    tokens: int = _f("Non-padding tokens processed, since this process started training.", "tokens")
    mem_allocated: int | None = _f("Memory held by tensors now: CUDA allocated, or the process's RSS on "
                                   "the CPU.", "bytes")
    mem_reserved: int | None = _f("Memory reserved by CUDA's caching allocator (null on the CPU).", "bytes")
    mem_peak: int | None = _f("Peak memory of this process so far, the quantity the estimate predicts: "
                              "CUDA's peak allocated on a GPU, or the process's peak RSS on the CPU.", "bytes")
    mem_peak_reserved: int | None = _f("CUDA's peak reserved so far (null on the CPU).", "bytes")
    elapsed_s: float = _f("Time since this process started training.", "seconds")
    eta_s: float | None = _f("Estimated time to the last step, from the steps so far.", "seconds")


@_event("eval")
@dataclass(kw_only=True)
class EvalEvent(Event):
    """An evaluation on the held-out examples finished."""

    step: int = _f("Optimizer steps done when it ran.", "optimizer steps")
    eval_loss: float | None = _f("Mean cross-entropy per labelled held-out token.", "nats per token")
    metrics: dict = _f("Every numeric metric the Trainer reported (eval_loss, eval_runtime in seconds, "
                       "…).")


@_event("checkpoint")
@dataclass(kw_only=True)
class CheckpointEvent(Event):
    """A checkpoint was written (resume from it with train.resume_from)."""

    step: int = _f("Optimizer steps done.", "optimizer steps")
    path: str = _f("The checkpoint folder.")


@_event("log")
@dataclass(kw_only=True)
class LogEvent(Event):
    """A line for the run's log."""

    message: str = _f("The text.")


@_event("warning")
@dataclass(kw_only=True)
class WarningEvent(Event):
    """Something the user should know; the run goes on."""

    message: str = _f("The text.")


@_event("finished")
@dataclass(kw_only=True)
class FinishedEvent(Event):
    """The run trained every step and saved its adapter."""

    adapter_dir: str = _f("The saved adapter (or model) folder.")
    run_dir: str = _f("The run folder.")
    metrics: dict = _f("train_loss, final_loss and eval_loss (nats per token), global_step (optimizer "
                       "steps); with several processes rank_bytes, a list by rank of the bytes of "
                       "parameters, gradients and optimizer_states each held.")
    step: int = _f("Optimizer steps done.", "optimizer steps")


@_event("failed")
@dataclass(kw_only=True)
class FailedEvent(Event):
    """The run stopped on an error."""

    error: str = _f("What went wrong, in plain words.")
    hint: str = _f("What to do about it.")
    traceback: str = _f("The Python traceback: only for the project's own faults, never for a UserError "
                        "(engine.errors); never shown raw in the UI.", always=False)
    field: str = _f("The run-file setting a user error is about (`data.path`, `train.lr`, …), so a client "
                    "can point at it; only for user errors that have one.", always=False)


@_event("stopped")
@dataclass(kw_only=True)
class StoppedEvent(Event):
    """The run was asked to stop and did so at a step boundary, saving its adapter and a checkpoint."""

    step: int = _f("Optimizer steps done.", "optimizer steps")
    adapter_dir: str = _f("The saved adapter (or model) folder.")
    run_dir: str = _f("The run folder.")
    reason: str = _f("Why it stopped: `stop requested`, a signal's name, ….")
    metrics: dict = _f("As in finished.")


EVENT_TYPES = tuple(EVENT_CLASSES)
TERMINAL_EVENTS = ("finished", "failed", "stopped")


def event_class(kind) -> type[Event]:
    """The dataclass of event ``kind``; ValueError for an unknown one."""
    if kind not in EVENT_CLASSES:
        raise ValueError(f"unknown event type {kind!r}; valid: {', '.join(EVENT_TYPES)}")
    return EVENT_CLASSES[kind]


def make_event(kind: str, **fields: Any) -> dict:
    """The JSON object of event ``kind`` with ``fields`` (ValueError for an unknown kind,
    TypeError for a field the kind does not have)."""
    return event_class(kind)(**fields).to_dict()


def contract_markdown() -> str:
    """The event contract as a Markdown table (docs/architecture.md embeds it; a test checks the
    committed copy is current)."""
    rows = ["| event | field | unit | always | meaning |", "|---|---|---|---|---|"]
    for kind, klass in EVENT_CLASSES.items():
        doc = (klass.__doc__ or "").split("\n\nFields:")[0].strip()
        rows.append(f"| `{kind}` | | | | {doc} |")
        for f in payload_fields(klass):
            md = f.metadata
            rows.append(f"| | `{f.name}` | {md.get('unit') or ''} | {'yes' if md.get('always') else ''} | "
                        f"{md['help']} |")
    head = ("Every event also has `event` (its kind) and `time` (seconds since the Unix epoch). "
            "*always*: a training run always sends the field (other emitters may send fewer).")
    return head + "\n\n" + "\n".join(rows)


# ---- serialising and reading ------------------------------------------------------------------

def _clean(v):
    # JSON has no NaN/inf; a diverged loss must still serialise (as null) rather than crash a run.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def dumps(event: dict | Event) -> str:
    """One JSON line (no newline) for an event."""
    if isinstance(event, Event):
        event = event.to_dict()
    return json.dumps(_clean(event), ensure_ascii=False, default=str)


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


# ---- sinks ------------------------------------------------------------------------------------

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
    """Hands every event to ``fn(event_dict)``."""

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

    def emit(self, event_or_kind: str | Event | dict, **fields) -> dict | None:
        """Send an event (a typed Event, a kind with its fields, or an event dict) to every sink;
        returns the dict sent (None while disabled, as on ranks other than 0)."""
        if not self.enabled:
            return None
        if isinstance(event_or_kind, Event):
            event = event_or_kind.to_dict()
        elif isinstance(event_or_kind, dict):
            event = event_or_kind
        else:
            event = make_event(event_or_kind, **fields)
        for s in self.sinks:
            try:
                s.emit(event)
            except Exception as e:  # a broken sink must never kill training
                print(f"peft-studio: event sink {type(s).__name__} failed: {e}", file=sys.stderr)
        return event

    def log(self, message: str) -> None:
        self.emit(LogEvent(message=message))

    def warn(self, message: str) -> None:
        self.emit(WarningEvent(message=message))

    def close(self) -> None:
        for s in self.sinks:
            s.close()
