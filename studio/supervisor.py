"""The run supervisor: owns the engine child process and turns its event stream into Qt signals.

A run is ``python -m engine train run.yaml`` in its own process (DESIGN §2.2): the UI never
competes with training for the GIL, and a crash or OOM kills the run, not the window. A reader
object living in a QThread blocks on the child's stdout and emits one signal per event; the
supervisor (in the UI thread) interprets exits and turns them into ``sig_finished``/``sig_failed``.

Stop writes ``stop`` to the child's stdin (honoured at the next step boundary, the adapter is
saved); only if the child has not exited after ``stop_timeout_s`` is it killed.

A run can also be *attached*: its ``events.jsonl`` is replayed and, while the process that
writes it is alive, followed — that is how the studio re-attaches after a restart.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from engine.events import TERMINAL_EVENTS, parse_event_line
from studio.logtext import relevant_tail
from studio.process import child_env

LOG_TAIL_LINES = 40
STDERR_FILE = "engine.log"


def engine_command(run_yaml: str) -> list[str]:
    """The child that runs ``run_yaml``: ``engine train``, or ``engine launch`` when its
    train.distributed asks for several processes (accelerate launch starts the ranks; rank 0's
    events arrive on stdout as from a single process, and ``stop`` on stdin reaches every rank)."""
    verb = "launch" if _multi_process(run_yaml) else "train"
    # JSON-lines events on stdout (the engine prints readable lines unless asked for JSON).
    return [sys.executable, "-m", "engine", verb, str(run_yaml), "--format", "json"]


def _multi_process(run_yaml: str) -> bool:
    import yaml

    try:
        d = ((yaml.safe_load(Path(run_yaml).read_text(encoding="utf-8")) or {}).get("train") or {}).get(
            "distributed") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return False    # the engine itself will say what is wrong with the file
    return isinstance(d, dict) and d.get("strategy", "single") != "single"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); /proc tells the truth on Linux.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def engine_alive(pid: int) -> bool:
    """pid_alive, and (where /proc can tell) the process really is an engine: pids get reused."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"engine" in fh.read()
    except OSError:
        return True


def exit_explanation(code: int | None) -> tuple[str, str]:
    """Plain-language (error, hint) for an engine that exited without saying why."""
    if code is None:
        return ("The engine process is gone and did not report how the run ended.",
                "It was probably killed or the machine restarted. The log tail below shows its last words.")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return (f"The engine process was killed ({name}).",
                    "If you did not stop it, the system probably ran out of memory: try a smaller batch "
                    "size or max length, gradient checkpointing, or a quantized base.")
        return (f"The engine process was terminated by {name}.", "Start the run again when ready.")
    if code == 0:
        return ("The engine exited without reporting a result.", "See the log for details.")
    return (f"The engine process crashed (exit code {code}).",
            "The log tail below shows what it printed last.")


class _ProcessReader(QObject):
    """Lives in a QThread: starts the child and reads its stdout. Never touches widgets.

    It waits on the pipe with a short ``select`` timeout rather than a blocking read, so that
    ``cancel`` (detaching with "keep running") ends the thread at once although the child goes on:
    a QThread still running when Qt destroys it aborts the whole app (SIGABRT).
    """

    sig_spawned = Signal(object)  # subprocess.Popen
    sig_spawn_failed = Signal(str)
    sig_events = Signal(object)   # a list: whatever arrived in one read, one queued signal
    sig_text = Signal(str)
    sig_exited = Signal(object)   # return code

    def __init__(self, argv, cwd, env, stderr_path, poll_s: float = 0.2):
        super().__init__()
        self.argv, self.cwd, self.env, self.stderr_path = argv, cwd, env, stderr_path
        self.poll_s = poll_s
        self._stop = threading.Event()

    def cancel(self):
        self._stop.set()

    @Slot()
    def run(self):
        try:
            Path(self.stderr_path).parent.mkdir(parents=True, exist_ok=True)
            err = open(self.stderr_path, "ab")
            # start_new_session: the run survives the studio closing ("keep running") and a Ctrl+C
            # in the terminal that launched the studio; we kill its whole group when we must.
            proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, bufsize=0, start_new_session=True)
            err.close()
        except OSError as e:
            self.sig_spawn_failed.emit(f"Could not start the engine: {e.strerror or e}")
            return
        self.sig_spawned.emit(proc)
        fd, pending = proc.stdout.fileno(), b""
        while True:
            if self._stop.is_set():
                return  # detached: the child runs on, unwatched
            if not select.select([fd], [], [], self.poll_s)[0]:
                continue
            # os.read returns whatever is there: a burst of events becomes one batch and one
            # queued signal instead of hundreds.
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            batch = []
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                ev = parse_event_line(line)
                if ev is not None:
                    batch.append(ev)
                elif line.strip():
                    self.sig_text.emit(line.rstrip("\r"))
            if batch:
                self.sig_events.emit(batch)
        if pending.strip():
            self.sig_text.emit(pending.decode("utf-8", "replace"))
        self.sig_exited.emit(proc.wait())


class _FileFollower(QObject):
    """Lives in a QThread: replays an events.jsonl, then follows it while ``pid`` is alive."""

    sig_events = Signal(object)  # a batch: replaying 10,000 steps must not be 10,000 queued signals
    sig_exited = Signal(object)

    def __init__(self, path: Path, pid: int, poll_s: float = 0.1):
        super().__init__()
        self.path, self.pid, self.poll_s = path, pid, poll_s
        self._stop = threading.Event()

    def cancel(self):
        self._stop.set()

    @Slot()
    def run(self):
        pos, partial, terminal = 0, "", False
        while True:
            alive = pid_alive(self.pid)  # sample before reading: no event can be missed after death
            batch = []
            try:
                with open(self.path, encoding="utf-8", errors="replace") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
            except FileNotFoundError:
                chunk = ""
            lines = (partial + chunk).split("\n")
            partial = lines.pop()  # a line still being written
            for line in lines:
                ev = parse_event_line(line)
                if ev is not None:
                    batch.append(ev)
                    if ev["event"] == "started":
                        terminal = False
                    elif ev["event"] in TERMINAL_EVENTS:
                        terminal = True
            if batch:
                self.sig_events.emit(batch)
            if terminal and not alive:
                self.sig_exited.emit(0)
                return
            if not alive:
                self.sig_exited.emit(None)
                return
            if self._stop.wait(self.poll_s):
                return


class RunSupervisor(QObject):
    """One run at a time. States: idle, starting, running, stopping, finished, stopped, failed."""

    sig_event = Signal(object)     # every engine event (a dict), in order
    sig_output = Signal(str)       # text the engine printed that is not an event
    sig_state = Signal(str)
    sig_finished = Signal(object)  # the terminal event: ``finished`` or ``stopped``
    sig_failed = Signal(object)    # {error, hint, log_tail, exit_code}

    def __init__(self, parent=None, command=None, stop_timeout_s: float = 120.0):
        super().__init__(parent)
        # looked up when the supervisor is made, not when this module is: a test (and the studio
        # process test) can point every supervisor at a stand-in engine
        self.command = command or engine_command
        self.stop_timeout_s = stop_timeout_s
        self.state = "idle"
        self.run_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.attached = False
        self._thread: QThread | None = None
        self._worker: QObject | None = None
        self._terminal: dict | None = None
        self._last_failed: dict | None = None
        self._text_tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._killed = False
        self._stdin_lock = threading.Lock()
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._stop_timed_out)
        # The engine's stderr goes to <run>/engine.log (a file survives the studio closing, a pipe
        # would not); this timer shows what it writes in the log panel as it happens.
        self._tail_timer = QTimer(self)
        self._tail_timer.setInterval(500)
        self._tail_timer.timeout.connect(self._read_stderr)
        self._tail_pos = 0
        self._tail_partial = b""

    # -- public API --------------------------------------------------------------------------
    def is_active(self) -> bool:
        return self.state in ("starting", "running", "stopping")

    def start(self, run_yaml: str | os.PathLike, run_dir: str | os.PathLike, cwd: str | None = None) -> None:
        """Start ``engine train run_yaml``; ``run_dir`` is the config's output_dir (for logs/attach)."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        self._reset(Path(run_dir), attached=False)
        worker = _ProcessReader(self.command(str(run_yaml)), cwd or os.getcwd(), child_env(),
                                str(self.run_dir / STDERR_FILE))
        worker.sig_spawned.connect(self._on_spawned)
        worker.sig_spawn_failed.connect(self._on_spawn_failed)
        worker.sig_events.connect(self._on_events)
        worker.sig_text.connect(self._on_text)
        worker.sig_exited.connect(self._on_exited)
        self._launch(worker)
        self._set_state("starting")

    def attach(self, run_dir: str | os.PathLike, pid: int = 0) -> None:
        """Replay ``run_dir/events.jsonl``; follow it while process ``pid`` is alive."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        self._reset(Path(run_dir), attached=True)
        self.pid = pid if engine_alive(pid) else 0
        worker = _FileFollower(self.run_dir / "events.jsonl", self.pid)
        worker.sig_events.connect(self._on_events)
        worker.sig_exited.connect(self._on_exited)
        self._launch(worker)
        self._set_state("running" if self.pid else "starting")

    def stop(self) -> bool:
        """Ask the run to stop at the next step boundary (saving the adapter). False if not running."""
        if self.state not in ("starting", "running"):
            return False
        sent = False
        if self.proc is not None:
            with self._stdin_lock:
                try:
                    self.proc.stdin.write(b"stop\n")
                    self.proc.stdin.flush()
                    sent = True
                except (BrokenPipeError, ValueError, OSError):
                    pass
        elif self.pid:
            # Re-attached: we do not own its stdin. SIGINT is the engine's other stop request.
            try:
                os.kill(self.pid, signal.SIGINT)
                sent = True
            except OSError:
                pass
        self._set_state("stopping")
        self._kill_timer.start(int(self.stop_timeout_s * 1000) if sent else 0)
        return True

    def kill(self) -> None:
        """Kill the run's whole process group now (a fallback: no adapter is saved)."""
        pid = self.proc.pid if self.proc is not None else self.pid
        if not pid or not pid_alive(pid):
            return
        self._killed = True
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def detach(self) -> None:
        """Stop listening but leave the process running (closing the window with "keep running").

        The reader thread is ended and waited for; then our ends of the child's pipes are closed.
        Both are harmless to the run: the engine treats EOF on stdin as "no more commands" and
        ignores a closed stdout (events.jsonl still gets every event, and a later attach reads it).
        """
        self._tail_timer.stop()
        self._kill_timer.stop()
        proc, self.proc = self.proc, None
        self._shutdown_thread(wait_ms=10_000)
        if proc is not None:
            with self._stdin_lock:
                for pipe in (proc.stdin, proc.stdout):
                    try:
                        pipe.close()
                    except (OSError, ValueError):
                        pass

    def shutdown(self, kill: bool = True, wait_ms: int = 5000) -> None:
        """Release the thread (and kill the process if asked). Safe to call twice."""
        self._kill_timer.stop()
        self._tail_timer.stop()
        if kill and self.is_active():
            self.kill()
        self._shutdown_thread(wait_ms)

    def log_tail(self) -> str:
        lines = list(self._text_tail)
        if self.run_dir is not None:
            try:
                with open(self.run_dir / STDERR_FILE, "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    fh.seek(max(0, fh.tell() - 16384))
                    text = fh.read().decode("utf-8", "replace")
                # tqdm redraws with \r; keep only the last frame of each line
                lines = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()] + lines
            except OSError:
                pass
        # the lines that explain a failure, not the libraries' FutureWarnings and progress bars
        return relevant_tail("\n".join(lines), LOG_TAIL_LINES)

    # -- internals ---------------------------------------------------------------------------
    def _reset(self, run_dir: Path, attached: bool):
        self._shutdown_thread(wait_ms=2000)
        self.run_dir = run_dir
        self.attached = attached
        self.proc = None
        self.pid = 0
        self._terminal = None
        self._last_failed = None
        self._killed = False
        self._text_tail.clear()

    def _launch(self, worker: QObject):
        try:
            self._tail_pos = (self.run_dir / STDERR_FILE).stat().st_size
        except OSError:
            self._tail_pos = 0
        self._tail_partial = b""
        self._tail_timer.start()
        thread = QThread(self)
        thread.setObjectName("run-supervisor")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        self._thread, self._worker = thread, worker
        _READING.add(self)
        thread.start()

    def _shutdown_thread(self, wait_ms: int):
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        _READING.discard(self)
        if thread is None:
            return
        worker.cancel()
        worker.blockSignals(True)  # nothing more from it; queued leftovers are dropped by _stale()
        thread.quit()
        if not thread.wait(wait_ms):
            # Both readers poll their stop flag every few hundred ms, so this is a last resort
            # against an OS that stalls a read: keep the thread referenced and unparented (Qt must
            # not destroy it running) and wait for it at exit (wait_orphans).
            thread.setParent(None)
            _ORPHANS.append((thread, worker))
            return
        # The worker's thread has ended, so it cannot deleteLater(); dropping the last Python
        # reference deletes it.
        thread.deleteLater()

    def _set_state(self, state: str):
        if state != self.state:
            self.state = state
            self.sig_state.emit(state)

    def _stale(self) -> bool:
        # A signal queued by a reader we have since replaced (detach, a new start) is ignored.
        return self.sender() is not self._worker

    @Slot(object)
    def _on_spawned(self, proc):
        if self._stale():
            return
        self.proc = proc
        self.pid = proc.pid

    @Slot(str)
    def _on_spawn_failed(self, message: str):
        if self._stale():
            return
        self._fail({"error": message, "hint": "Check that the studio's Python environment is complete "
                    "(make setup).", "log_tail": "", "exit_code": None})

    @Slot(object)
    def _on_events(self, batch):
        if self._stale():
            return
        for ev in batch:
            self._on_event(ev)

    def _on_event(self, ev: dict):
        kind = ev.get("event")
        if kind == "started":
            self._terminal = None
            if self.state == "starting":
                self._set_state("running")
        elif kind in TERMINAL_EVENTS:
            self._terminal = ev
        self.sig_event.emit(ev)
        if kind in ("step", "eval") and self.state == "starting":
            self._set_state("running")  # attached mid-run to a file that began before our read

    @Slot(str)
    def _on_text(self, line: str):
        if self._stale():
            return
        self._text_tail.append(line)
        self.sig_output.emit(line)

    @Slot(object)
    def _on_exited(self, code):
        if self._stale():
            return
        self._kill_timer.stop()
        self._tail_timer.stop()
        self._read_stderr()
        self.proc = None
        # Release the reader before telling anyone: a handler may start the next run at once.
        self._shutdown_thread(wait_ms=2000)
        term = self._terminal
        if term is not None and term["event"] in ("finished", "stopped"):
            self._set_state(term["event"])
            self.sig_finished.emit(term)
        elif term is not None and term["event"] == "failed":
            self._fail({"error": term.get("error") or "The run failed.", "hint": term.get("hint") or "",
                        "field": term.get("field") or "", "log_tail": self.log_tail(), "exit_code": code})
        elif self._killed:
            self._fail({"error": "The run was killed before it could save.",
                        "hint": "Checkpoints saved earlier are kept; Resume continues from the latest one.",
                        "log_tail": self.log_tail(), "exit_code": code})
        else:
            error, hint = exit_explanation(code)
            self._fail({"error": error, "hint": hint, "log_tail": self.log_tail(), "exit_code": code})

    @Slot()
    def _read_stderr(self):
        if self.run_dir is None:
            return
        try:
            with open(self.run_dir / STDERR_FILE, "rb") as fh:
                fh.seek(self._tail_pos)
                chunk = fh.read(1 << 20)
                self._tail_pos = fh.tell()
        except OSError:
            return
        if not chunk:
            return
        *lines, self._tail_partial = (self._tail_partial + chunk).split(b"\n")
        for raw in lines:
            # progress bars redraw with \r: only the last frame of a line is worth showing
            line = raw.decode("utf-8", "replace").rsplit("\r", 1)[-1].rstrip()
            if line:
                self.sig_output.emit(line)

    def _fail(self, info: dict):
        self._last_failed = info
        self._set_state("failed")
        self.sig_failed.emit(info)

    @Slot()
    def _stop_timed_out(self):
        if self.state == "stopping":
            self.sig_output.emit(f"The run did not stop within {self.stop_timeout_s:.0f} s; killing it.")
            self.kill()


# Reader threads that did not end in time; kept referenced and waited for at exit.
_ORPHANS: list = []
# Supervisors whose reader thread runs, held strongly: one dropped without shutdown() must not be
# garbage-collected with its QThread running (Qt aborts the process); it stays until shut down.
_READING: set = set()


def reading_supervisors() -> list[RunSupervisor]:
    """Supervisors whose reader thread has not been ended (``shutdown`` or ``detach`` ends it):
    a closing window ends its own; tests check that none is left after each test."""
    return list(_READING)


def wait_orphans() -> None:
    """Wait for reader threads that outlived their supervisor (called as the app exits)."""
    while _ORPHANS:
        thread, _worker = _ORPHANS.pop()
        thread.wait()


def wait_for_exit(sup: RunSupervisor, timeout_s: float) -> bool:
    """Block (processing nothing) until the supervisor's process has exited — for shutdown paths."""
    deadline = time.monotonic() + timeout_s
    proc = sup.proc
    while proc is not None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc is None or proc.poll() is not None
