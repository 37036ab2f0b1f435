"""Background work and its way back to the UI thread.

Two kinds of worker, one delivery path:

* ``run_job(name, *args)`` runs a studio/jobs.py function in the **job helper process**
  (``python -m studio.job_server``): everything that imports torch/transformers, so the GIL of
  the UI process is never held for seconds by an import or a meta-model build.
* ``run_in_thread(fn, *args)`` runs light Python (file reads, SQLite) in a daemon thread.

Either way the result reaches a callback *in the UI thread* through one long-lived bridge object
(Anki's ``run_on_main``); a callback whose widget has been deleted meanwhile is skipped. Workers
never touch widgets.

``LatestJob`` adds what every panel needs: a debounce, and only the newest request's result —
a slow inspection of the previous model must never overwrite the current one.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from studio.messages import JobError

_POOL_SIZE = 2


class _Bridge(QObject):
    sig_call = Signal(object)

    def __init__(self):
        super().__init__()
        self.sig_call.connect(self._call)

    @Slot(object)
    def _call(self, thunk):
        thunk()


_bridge: _Bridge | None = None


def init_bridge() -> None:
    """Create the bridge in the UI thread (called by the app and the window; idempotent)."""
    global _bridge
    if _bridge is None:
        _bridge = _Bridge()


def _alive(fn) -> bool:
    owner = getattr(fn, "__self__", None)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)


def _post(callback, value):
    if callback is None or _bridge is None:
        return

    def thunk():
        if _alive(callback):
            callback(value)

    _bridge.sig_call.emit(thunk)


def post_to_ui(callback, value) -> None:
    """Call ``callback(value)`` in the UI thread, from any thread (skipped if its widget is gone).
    The bridge must exist already (``init_bridge`` in the UI thread)."""
    _post(callback, value)


# ---- threads ----------------------------------------------------------------------------------

_queue: queue.Queue = queue.Queue()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def _thread_loop():
    while True:
        fn, args, on_done, on_error = _queue.get()
        try:
            result = fn(*args)
        except BaseException as e:  # a failed job must reach its panel as a message, not kill the thread
            _post(on_error, e)
        else:
            _post(on_done, result)


def run_in_thread(fn: Callable, *args, on_done: Callable | None = None,
                  on_error: Callable | None = None) -> None:
    """Run light ``fn(*args)`` off the UI thread; deliver the result or exception to the UI thread."""
    init_bridge()
    with _lock:
        if len(_threads) < _POOL_SIZE:
            # Daemon threads: a window closed during a slow read must not hang the exit.
            t = threading.Thread(target=_thread_loop, name=f"studio-worker-{len(_threads)}", daemon=True)
            t.start()
            _threads.append(t)
    _queue.put((fn, args, on_done, on_error))


# ---- the job helper process -------------------------------------------------------------------

class JobServer:
    """Client of ``studio.job_server``: one request in flight; pending requests coalesce per key
    (a newer request for the same key replaces an older one that has not been sent yet)."""

    def __init__(self):
        self._cv = threading.Condition()
        self._pending: OrderedDict = OrderedDict()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._next_id = 0

    def submit(self, key, name: str, args: tuple, on_done=None, on_error=None) -> None:
        init_bridge()
        with self._cv:
            if self._closed:
                return
            self._pending.pop(key, None)
            self._pending[key] = (name, args, on_done, on_error)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="studio-jobs", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _spawn(self) -> subprocess.Popen:
        from studio.supervisor import child_env

        return subprocess.Popen([sys.executable, "-m", "studio.job_server"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=child_env(), cwd=os.getcwd(),
                                start_new_session=True)

    def _loop(self):
        from studio.job_server import _read

        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                _key, (name, args, on_done, on_error) = self._pending.popitem(last=False)
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._spawn()
                self._next_id += 1
                data = pickle.dumps((self._next_id, name, args), protocol=pickle.HIGHEST_PROTOCOL)
                self._proc.stdin.write(len(data).to_bytes(8, "little") + data)
                self._proc.stdin.flush()
                raw = _read(self._proc.stdout)  # blocks without the GIL while the helper works
                if raw is None:
                    raise EOFError
                _job_id, ok, payload = pickle.loads(raw)
            except (OSError, EOFError, ValueError, pickle.PickleError) as e:
                if self._closed:
                    return
                self._proc = None
                _post(on_error, JobError(type(e).__name__, "The studio's helper process stopped unexpectedly "
                                         "(perhaps out of memory); it restarts with the next request."))
                continue
            if ok:
                _post(on_done, payload)
            else:
                _post(on_error, JobError(*payload))

    def shutdown(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                pass


# Two helper processes ("lanes"): reading and tokenizing a large data set can take seconds,
# and the estimate and parameter counts must not wait behind it.
LANES = ("fast", "data")
_servers: dict[str, JobServer] = {}


def job_server(lane: str = "fast") -> JobServer:
    if lane not in _servers:
        _servers[lane] = JobServer()
        atexit.register(_servers[lane].shutdown)
    return _servers[lane]


def run_job(name: str, *args, on_done=None, on_error=None, key=None, lane: str = "fast") -> None:
    """Run ``studio.jobs.<name>(*args)`` in a helper process; ``key`` coalesces pending requests."""
    job_server(lane).submit(key if key is not None else object(), name, args, on_done, on_error)


# ---- debounced latest-only jobs ---------------------------------------------------------------

class LatestJob(QObject):
    """Debounced background job whose stale results are dropped.

    ``fn`` is a studio/jobs.py function name (runs in the helper process) or a callable (a thread).
    """

    sig_started = Signal()
    sig_result = Signal(object)
    sig_error = Signal(object)  # the exception

    def __init__(self, fn: str | Callable, delay_ms: int = 150, parent=None, lane: str = "fast"):
        super().__init__(parent)
        self.fn = fn
        self.lane = lane
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
        done, err = self._make_cb(gen, self.sig_result), self._make_cb(gen, self.sig_error)
        if isinstance(self.fn, str):
            run_job(self.fn, *self._args, on_done=done, on_error=err, key=id(self), lane=self.lane)
        else:
            run_in_thread(self.fn, *self._args, on_done=done, on_error=err)

    def _make_cb(self, gen: int, sig):
        job = self

        def deliver(value):
            if shiboken6.isValid(job) and gen == job._generation:
                job.busy = False
                sig.emit(value)

        return deliver
