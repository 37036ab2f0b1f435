"""The studio's one background-task mechanism: a ``Task`` with progress, cancel, and its result
delivered by signal in the UI thread (the shape of Orange's ``TaskState``/``ConcurrentMixin``).

Three places a task can run, one contract:

* ``start_thread(fn, *args)``: light Python (file reads, SQLite, importing pyqtgraph) in a
  daemon worker thread of this process;
* ``start_job(name, *args, lane=...)``: a studio/jobs.py function in a job helper process
  (studio/process.py): everything that imports torch/transformers or touches a model, so the
  GIL of the UI process is never held for seconds;
* ``start_command(argv, ...)``: a one-shot command that speaks wire (the engine's time probe).

Task functions are ``fn(state, *args)`` (studio/task_state.py) and never touch widgets. What they
report arrives as wire messages (engine/wire.py) and is re-emitted by the Task in the UI thread:
``sig_status``, ``sig_progress``, ``sig_partial``, then exactly one of ``sig_result`` or
``sig_error`` (a ``TaskError`` in plain words), then ``sig_finished``. ``cancel()`` asks the
function to stop and drops everything it sends afterwards; ``request_interruption()`` only asks,
and the (early) result still arrives. A Task whose owner was deleted delivers nothing.

``LatestJob`` adds what every panel needs: a debounce, and only the newest request's result.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from engine import wire
from studio.messages import TaskError, error_message
from studio.process import CommandProcess, HelperProcess
from studio.task_state import TaskState

# ---- the way back to the UI thread --------------------------------------------------------------


class _Bridge(QObject):
    """Lives in the UI thread; a queued signal carries a thunk there (Anki's ``run_on_main``)."""

    sig_call = Signal(object)

    def __init__(self):
        super().__init__()
        self.sig_call.connect(self._call)

    @Slot(object)
    def _call(self, thunk):
        thunk()


_bridge: _Bridge | None = None


def init_bridge() -> None:
    """Create the bridge in the UI thread (the app and the window call it; idempotent)."""
    global _bridge
    if _bridge is None:
        _bridge = _Bridge()


def _alive(fn) -> bool:
    owner = getattr(fn, "__self__", None)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)


def post_to_ui(callback: Callable, value) -> None:
    """Call ``callback(value)`` in the UI thread, from any thread; skipped if its QObject is gone."""
    if _bridge is None:
        return

    def thunk():
        if _alive(callback):
            callback(value)

    _bridge.sig_call.emit(thunk)


# ---- the task ---------------------------------------------------------------------------------------


class Task(QObject):
    """One piece of background work as the UI sees it. Create with start_thread/start_job/start_command."""

    sig_status = Signal(str)              # what it is doing now
    sig_progress = Signal(object, object)  # done, total (total None while unknown)
    sig_partial = Signal(object)          # a piece of the result (set_partial_result)
    sig_result = Signal(object)           # the return value
    sig_error = Signal(object)            # a TaskError
    sig_finished = Signal()               # after sig_result or sig_error (not after cancel)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName(f"task:{name}")
        self.name = name
        self.interrupt = threading.Event()
        self.cancelled = False
        self.done = False
        self.error: TaskError | None = None
        self._on_cancel: Callable[[], None] | None = None     # drop the work (cancel)
        self._on_interrupt: Callable[[], None] | None = None  # only ask it to stop (else _on_cancel)

    @property
    def running(self) -> bool:
        return not self.done and not self.cancelled

    def cancel(self) -> None:
        """Ask the work to stop and drop whatever it still sends (no more signals)."""
        if self.done or self.cancelled:
            return
        self.cancelled = True
        self.interrupt.set()
        if self._on_cancel is not None:
            self._on_cancel()

    def request_interruption(self) -> None:
        """Ask the work to stop at its next check; what it returns is still delivered (a helper
        job not yet started still runs, sees the request at once and replies; a one-shot command
        is killed, which it reports as its failure)."""
        self.interrupt.set()
        stop = self._on_interrupt if self._on_interrupt is not None else self._on_cancel
        if stop is not None:
            stop()

    def deliver(self, msg: dict) -> None:
        """Called from any thread with a wire message; handled in the UI thread."""
        post_to_ui(self._handle, msg)

    @Slot(object)
    def _handle(self, msg: dict) -> None:
        if self.cancelled or self.done:
            return
        kind = msg.get("type")
        if kind == "progress":
            if msg.get("status") is not None:
                self.sig_status.emit(str(msg["status"]))
            # a status-only message leaves the bar alone; set_progress_value(None) makes it a busy bar
            if msg.get("status") is None or msg.get("done") is not None or msg.get("total") is not None:
                self.sig_progress.emit(msg.get("done"), msg.get("total"))
        elif kind == "partial":
            self.sig_partial.emit(msg.get("value"))
        elif kind == "result":
            self.done = True
            self.sig_result.emit(msg.get("value"))
            self.sig_finished.emit()
        elif kind == "error":
            self.done = True
            self.error = TaskError.from_wire(msg)
            self.sig_error.emit(self.error)
            self.sig_finished.emit()


# ---- threads ------------------------------------------------------------------------------------------

_POOL_SIZE = 2
_queue: queue.Queue = queue.Queue()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def _thread_loop():
    while True:
        item = _queue.get()
        if item is None:
            return
        task, fn, args = item
        if task.interrupt.is_set():
            continue  # cancelled before it started
        state = TaskState(report=task.deliver, interrupt=task.interrupt)
        try:
            value = fn(state, *args)
        except BaseException as e:  # a failed task must reach its panel as a message, not kill the thread
            task.deliver(error_message(e))
        else:
            task.deliver(wire.result(value))


def start_thread(fn: Callable, *args, parent: QObject | None = None, name: str | None = None) -> Task:
    """Run light ``fn(state, *args)`` in a worker thread of this process."""
    init_bridge()
    task = Task(name or getattr(fn, "__name__", "task"), parent)
    with _lock:
        if len(_threads) < _POOL_SIZE:
            # Daemon threads: a window closed during a slow read must not hang the exit.
            t = threading.Thread(target=_thread_loop, name=f"studio-worker-{len(_threads)}", daemon=True)
            t.start()
            _threads.append(t)
    _queue.put((task, fn, args))
    return task


# ---- helper processes ---------------------------------------------------------------------------------

# Lanes: one helper process each, so a slow job never waits behind another kind. "fast": the
# estimate, counts and model inspection; "data": reading and tokenizing a data set (seconds for
# a large one); "export" and "playground": model-sized work (the playground keeps its model
# loaded between generations).
LANES = ("fast", "data", "export", "playground")
_helpers: dict[str, HelperProcess] = {}
# Every one-shot command still watched (the time probe): shutdown() kills and joins them, whoever
# started them, so no watching thread outlives the studio. Weak: a finished command just drops out.
_commands: weakref.WeakSet[CommandProcess] = weakref.WeakSet()
_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown)  # no helper outlives the studio, whichever way it exits
        _atexit_registered = True


def helper(lane: str = "fast") -> HelperProcess:
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}; one of {', '.join(LANES)}")
    if lane not in _helpers:
        _register_atexit()
        _helpers[lane] = HelperProcess(lane)
    return _helpers[lane]


def start_job(job: str, *args, lane: str = "fast", key=None, parent: QObject | None = None) -> Task:
    """Run ``studio.jobs.<job>(state, *args)`` in the lane's helper process. Arguments and the
    result are JSON values (a RunConfig crosses as ``cfg.to_dict()``). ``key``: a newer job with
    the same key replaces an older one that has not been sent yet."""
    return submit_to(helper(lane), job, *args, key=key, parent=parent)


def submit_to(server: HelperProcess, job: str, *args, key=None, parent: QObject | None = None) -> Task:
    """``start_job`` on a given helper process (one serving another jobs table, in tests)."""
    init_bridge()
    task = Task(job, parent)
    sub = server.submit(job, list(args), task.deliver, key=key)
    task._on_cancel, task._on_interrupt = sub.cancel, sub.interrupt
    return task


def start_command(argv: list[str], parse_stdout: Callable[[str], object],
                  explain: Callable[[int | None, list[str]], dict], *, name: str = "command",
                  cwd: str | None = None, on_exit: Callable[[], None] | None = None,
                  parent: QObject | None = None) -> tuple[Task, CommandProcess]:
    """Run a one-shot wire-speaking command (studio/process.py: CommandProcess); cancel kills it.
    Raises OSError when it cannot start."""
    init_bridge()
    task = Task(name, parent)
    cmd = CommandProcess(argv, task.deliver, parse_stdout, explain, cwd=cwd, on_exit=on_exit)
    _register_atexit()
    _commands.add(cmd)
    task._on_cancel = cmd.cancel
    return task, cmd


def shutdown() -> None:
    """End every helper process, one-shot command and worker thread, and wait for their threads
    (the app's last step; tests' teardown). Safe to call again: later work starts afresh."""
    helpers = list(_helpers.values())
    _helpers.clear()
    for h in helpers:
        h.shutdown()
    close_commands()
    with _lock:
        threads = list(_threads)
        _threads.clear()
    for _ in threads:
        _queue.put(None)
    for t in threads:
        t.join(2.0)


def close_commands() -> None:
    """Kill every one-shot command still running and wait for its watching thread."""
    for cmd in list(_commands):
        cmd.close()
    _commands.clear()


def live_threads(app_level: bool = True) -> list[str]:
    """Names of the studio's own background threads still running: helper readers, command
    watchers and, with ``app_level``, the threads the app keeps for its whole life (the lanes'
    helper readers, the worker pool). Empty after ``shutdown()``; tests check it after each test
    (``app_level=False``: the lanes live as long as the app, here the test session) and at the end."""
    lanes = {f"studio-helper-{lane}" for lane in _helpers}
    return sorted(t.name for t in threading.enumerate()
                  if t.is_alive() and t.name.startswith(("studio-helper-", "studio-command", "studio-worker-"))
                  and (app_level or not (t.name in lanes or t.name.startswith("studio-worker-"))))


# ---- debounced latest-only jobs --------------------------------------------------------------------


class LatestJob(QObject):
    """A debounced background job whose stale results are dropped: only the newest request's
    result (or error) is emitted. ``fn`` is a studio/jobs.py name (runs in a helper process on
    ``lane``) or a callable ``fn(state, *args)`` (runs in a thread)."""

    sig_started = Signal()
    sig_result = Signal(object)
    sig_error = Signal(object)  # a TaskError

    def __init__(self, fn: str | Callable, delay_ms: int = 150, parent=None, lane: str = "fast"):
        super().__init__(parent)
        self.fn = fn
        self.lane = lane
        self._args: tuple = ()
        self.task: Task | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._fire)

    @property
    def busy(self) -> bool:
        return self._timer.isActive() or (self.task is not None and self.task.running)

    def request(self, *args) -> None:
        self._args = args
        self._drop()  # a result for older arguments is now stale, even if still running
        self._timer.start()

    def run_now(self, *args) -> None:
        self._args = args
        self._drop()
        self._timer.stop()
        self._fire()

    def cancel(self) -> None:
        self._timer.stop()
        self._drop()

    def _drop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            task.deleteLater()

    def _finished(self, task: Task) -> None:
        if task is self.task:
            self.task = None
        task.deleteLater()

    @Slot()
    def _fire(self):
        self.sig_started.emit()
        if isinstance(self.fn, str):
            task = start_job(self.fn, *self._args, lane=self.lane, key=id(self), parent=self)
        else:
            task = start_thread(self.fn, *self._args, parent=self)
        task.sig_result.connect(self.sig_result)
        task.sig_error.connect(self.sig_error)
        task.sig_finished.connect(lambda: self._finished(task))
        self.task = task
