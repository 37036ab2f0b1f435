"""What a background function is handed: report progress, hand over partial results, and learn
that it should stop (the shape of Orange's ``TaskState``). Qt-free, so the same job function runs
in a studio thread and in the job helper process.

Every task function is called as ``fn(state, *args)``. The state turns each report into a wire
message (engine/wire.py); the runner decides where it goes: to the UI thread (a thread task) or
down the helper's stdout (a process task). Either way the Task object in the UI thread receives
the same messages and turns them into its ``sig_*`` signals, so a panel cannot tell the two apart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from engine import wire


class TaskState:
    """Handed to a running task. Thread-safe; every method may be called from the task's thread."""

    def __init__(self, report: Callable[[dict], None] | None = None, interrupt: threading.Event | None = None):
        self._report = report or (lambda msg: None)
        self._interrupt = interrupt or threading.Event()

    def set_status(self, text: str) -> None:
        """A sentence saying what the task is doing now ("Loading the base model")."""
        self._report(wire.progress(status=text))

    def set_progress_value(self, done: float | None, total: float | None = None) -> None:
        """How far along: ``done`` of ``total`` (same unit; ``total`` None while unknown)."""
        self._report(wire.progress(done=done, total=total))

    def set_partial_result(self, value) -> None:
        """A piece of the result that the UI may show before the task ends (JSON-serialisable)."""
        self._report(wire.partial(value))

    def is_interruption_requested(self) -> bool:
        """True once the UI has asked the task to stop; check it between units of work."""
        return self._interrupt.is_set()

    def request_interruption(self) -> None:
        self._interrupt.set()

    def as_event(self) -> _InterruptEvent:
        """An object with ``is_set()``, for engine functions that take a ``threading.Event`` cancel."""
        return _InterruptEvent(self)


class _InterruptEvent:
    def __init__(self, state: TaskState):
        self._state = state

    def is_set(self) -> bool:
        return self._state.is_interruption_requested()
