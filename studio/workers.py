"""Short background jobs (model inspection, data preview, estimates) and their way back to the UI.

Workers never touch widgets: a job runs a plain function in a daemon thread and its result is
delivered to a callback *in the UI thread* through one long-lived bridge object (Anki's
``run_on_main``). A callback whose widget has been deleted meanwhile is skipped.

``LatestJob`` adds what every panel needs: a debounce, and only the newest request's result —
a slow inspection of the previous model must never overwrite the current one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal, Slot

_POOL_SIZE = 3


class _Bridge(QObject):
    sig_call = Signal(object)

    def __init__(self):
        super().__init__()
        self.sig_call.connect(self._call)

    @Slot(object)
    def _call(self, thunk):
        thunk()


_bridge: _Bridge | None = None
_queue: queue.Queue = queue.Queue()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def init_bridge() -> None:
    """Create the bridge in the UI thread (called by the app; idempotent)."""
    global _bridge
    if _bridge is None:
        _bridge = _Bridge()


def _alive(fn) -> bool:
    owner = getattr(fn, "__self__", None)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)


def _worker_loop():
    while True:
        fn, args, on_done, on_error = _queue.get()
        try:
            result = fn(*args)
        except BaseException as e:  # a failed job must reach its panel as a message, not kill the thread
            if on_error is not None:
                _post(on_error, e)
        else:
            if on_done is not None:
                _post(on_done, result)


def _post(callback, value):
    def thunk():
        if _alive(callback):
            callback(value)

    _bridge.sig_call.emit(thunk)


def run_in_thread(fn: Callable, *args, on_done: Callable | None = None,
                  on_error: Callable | None = None) -> None:
    """Run ``fn(*args)`` off the UI thread; deliver the result or exception to the UI thread."""
    init_bridge()
    with _lock:
        if len(_threads) < _POOL_SIZE:
            # Daemon threads: a window closed during a slow import must not hang the exit.
            t = threading.Thread(target=_worker_loop, name=f"studio-worker-{len(_threads)}", daemon=True)
            t.start()
            _threads.append(t)
    _queue.put((fn, args, on_done, on_error))


class LatestJob(QObject):
    """Debounced background job whose stale results are dropped."""

    sig_started = Signal()
    sig_result = Signal(object)
    sig_error = Signal(object)  # the exception

    def __init__(self, fn: Callable, delay_ms: int = 150, parent=None):
        super().__init__(parent)
        self.fn = fn
        self._args: tuple = ()
        self._generation = 0
        self.busy = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._fire)

    def request(self, *args) -> None:
        self._args = args
        self._generation += 1  # a result for older arguments is now stale, even if still running
        self._timer.start()

    def run_now(self, *args) -> None:
        self._args = args
        self._generation += 1
        self._timer.stop()
        self._fire()

    def cancel(self) -> None:
        self._generation += 1
        self._timer.stop()
        self.busy = False

    @Slot()
    def _fire(self):
        gen = self._generation
        self.busy = True
        self.sig_started.emit()
        run_in_thread(self.fn, *self._args, on_done=self._make_cb(gen, self.sig_result),
                      on_error=self._make_cb(gen, self.sig_error))

    def _make_cb(self, gen: int, sig):
        job = self

        def deliver(value):
            if shiboken6.isValid(job) and gen == job._generation:
                job.busy = False
                sig.emit(value)

        return deliver
