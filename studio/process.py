"""Helper processes, spoken to in wire messages (engine/wire.py: one JSON object a line, JSON only).

Two kinds, both Qt-free (studio/tasks.py turns their messages into a Task's signals):

* ``HelperProcess``: a long-lived ``python -m studio.job_server`` (one per lane) that runs the
  functions of studio/jobs.py. Why a process and not a thread: importing torch/transformers and
  building (meta) models holds the GIL for seconds, which froze the window for up to 4 s when
  these ran in threads (DESIGN §2.2's reasoning, applied to short jobs too). One request is in
  flight at a time; a newer request with the same key replaces an unsent older one.
* ``CommandProcess``: a one-shot command (the engine's time probe) whose stderr carries wire
  progress lines and whose stdout carries the result; cancelling kills its process group at once.

Every reply reaches ``on_message(msg)`` on a reader thread; the caller moves it to the UI thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

from engine import wire

OnMessage = Callable[[dict], None]


def child_env() -> dict:
    """The environment for every child the studio starts (engine runs, helpers, the probe)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # messages must arrive as they happen, not when a buffer fills
    # The engine must be importable whatever the child's cwd is (an uninstalled checkout too).
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a child started with ``start_new_session`` and everything it started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except OSError:
            pass


class Submission:
    """One request to a helper: its id, and how to stop it. ``cancel``: dropped if still pending,
    else the job is asked to stop (its owner drops the reply). ``interrupt``: the job is asked to
    stop, at once if it runs, else as soon as it is sent, and its (early) reply still comes: a
    pending request is never silently dropped, or its owner would wait forever."""

    def __init__(self, server: HelperProcess, job: str, args: list, on_message: OnMessage):
        self.server, self.job, self.args, self.on_message = server, job, args, on_message
        self.id = 0
        self.cancelled = False
        self.interrupted = False

    def cancel(self) -> None:
        self.cancelled = True
        self.server._cancel(self)

    def interrupt(self) -> None:
        self.interrupted = True
        self.server._interrupt(self)


class HelperProcess:
    """Client of one ``studio.job_server`` process; the process starts with the first request and
    restarts after a crash (the failed request reports it)."""

    def __init__(self, lane: str, argv: list[str] | None = None):
        self.lane = lane
        self.argv = argv or [sys.executable, "-m", "studio.job_server"]
        self._cv = threading.Condition()
        self._pending: OrderedDict = OrderedDict()     # key → Submission, oldest first
        self._current: Submission | None = None
        self._proc: subprocess.Popen | None = None
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._next_id = 0

    def submit(self, job: str, args: list | tuple, on_message: OnMessage, key=None) -> Submission:
        sub = Submission(self, job, list(args), on_message)
        with self._cv:
            if self._closed:
                sub.cancelled = True
                return sub
            old = self._pending.pop(key, None) if key is not None else None
            if old is not None:
                old.cancelled = True  # replaced before it was sent: its Task is stale anyway
            self._pending[key if key is not None else sub] = sub
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"studio-helper-{self.lane}", daemon=True)
                self._thread.start()
            self._cv.notify()
        return sub

    @property
    def process(self) -> subprocess.Popen | None:
        return self._proc

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
                                cwd=os.getcwd(), start_new_session=True, text=True, encoding="utf-8",
                                errors="replace", bufsize=1)

    def _send(self, msg: dict) -> None:
        with self._write_lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise BrokenPipeError("the helper is not running")
            wire.write(proc.stdin, msg)

    def _cancel(self, sub: Submission) -> None:
        with self._cv:
            for k, v in list(self._pending.items()):
                if v is sub:
                    del self._pending[k]
                    return
            in_flight = self._current is sub and sub.id
        if in_flight:
            self._send_cancel(sub)

    def _interrupt(self, sub: Submission) -> None:
        with self._cv:
            in_flight = self._current is sub and sub.id
        # A pending request stays queued: _run_one sends the cancel right after it (the flag is set).
        if in_flight:
            self._send_cancel(sub)

    def _send_cancel(self, sub: Submission) -> None:
        try:
            self._send(wire.cancel(sub.id))
        except OSError:
            pass  # it is ending anyway

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                _key, sub = self._pending.popitem(last=False)
                self._next_id += 1
                sub.id = self._next_id
                self._current = sub
            try:
                self._run_one(sub)
            finally:
                with self._cv:
                    self._current = None

    def _run_one(self, sub: Submission) -> None:
        if sub.cancelled:
            return
        try:
            with self._cv:
                # Spawned under the lock, after a last look at _closed: a shutdown racing this
                # request either sees the new process (and ends it) or this thread sees _closed.
                # Otherwise a helper spawned just after shutdown() would keep this thread reading
                # its stdout forever.
                if self._closed:
                    return
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._spawn()
                proc = self._proc
            self._send(wire.request(sub.id, sub.job, sub.args))
            if sub.interrupted or sub.cancelled:
                # asked to stop while it waited (or while its request was being sent): the job
                # sees the flag at its first check and replies early (the server takes the cancel
                # whichever line it reads first)
                self._send(wire.cancel(sub.id))
            stdout = proc.stdout
            while True:
                line = stdout.readline()  # blocks without the GIL while the helper works
                if not line:
                    raise EOFError("the helper closed its output")
                msg = wire.decode(line)
                if msg is None or msg.get("id") != sub.id:
                    continue
                sub.on_message(msg)
                if msg["type"] in ("result", "error"):
                    return
        except (OSError, EOFError, ValueError, TypeError) as e:
            with self._cv:
                if self._closed:
                    return
                self._proc = None
            sub.on_message(wire.error(
                "The studio's helper process stopped unexpectedly (perhaps out of memory); it restarts with "
                "the next request.", error_type=type(e).__name__))

    @property
    def thread_alive(self) -> bool:
        """Whether this client's reader thread is still running (tests check none is left)."""
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self, wait_s: float = 2.0) -> None:
        """End the helper: close its stdin (it exits after the current job), kill it if it lingers,
        and wait for the reader thread. Safe to call twice; later submissions are cancelled."""
        with self._cv:
            self._closed = True
            self._pending.clear()
            self._cv.notify_all()
            proc, self._proc = self._proc, None
        if proc is not None:
            with self._write_lock:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                proc.wait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)


class CommandProcess:
    """A one-shot command speaking wire on stderr: progress lines while it works; its stdout is
    handed to ``parse_stdout`` for the result when it exits 0; other exits become the wire error
    ``explain(code, stderr_tail)`` returns (unless the command sent its own error message). ``cancel`` kills it (and all it started) at once."""

    def __init__(self, argv: list[str], on_message: OnMessage, parse_stdout: Callable[[str], object],
                 explain: Callable[[int | None, list[str]], dict], cwd: str | None = None,
                 on_exit: Callable[[], None] | None = None):
        self.argv, self.on_message, self.parse_stdout, self.explain = argv, on_message, parse_stdout, explain
        self.on_exit = on_exit
        self.cancelled = False
        self.proc = subprocess.Popen(argv, cwd=cwd or os.getcwd(), env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._thread = threading.Thread(target=self._watch, name="studio-command", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self.cancelled = True
        kill_group(self.proc)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def _watch(self) -> None:
        tail: deque[str] = deque(maxlen=40)
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.read()), name="studio-command-out",
                                  daemon=True)
        reader.start()
        failure: dict | None = None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                msg = wire.decode(line)
            except wire.WireError:
                msg = None
            if msg is None:
                tail.append(line)
            elif msg["type"] == "error":
                failure = msg  # its own account of the failure beats any guess from the exit code
            elif msg["type"] in ("progress", "partial"):
                self.on_message(msg)
        code = self.proc.wait()
        reader.join()
        try:
            if self.on_exit is not None:
                self.on_exit()
        finally:
            if code == 0 and failure is None:
                try:
                    value = self.parse_stdout(b"".join(out).decode("utf-8", "replace"))
                except (ValueError, KeyError, TypeError) as e:
                    self.on_message(wire.error(f"The result could not be read ({e}).", error_type=type(e).__name__))
                else:
                    self.on_message(wire.result(value))
            else:
                self.on_message(failure or self.explain(code, list(tail)))

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def thread_alive(self) -> bool:
        """Whether the watching thread still runs (it ends once the command has exited)."""
        return self._thread.is_alive()

    def close(self, wait_s: float = 5.0) -> None:
        """Kill the command if it still runs and wait for its watching thread (every close path)."""
        if self.running:
            self.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join(wait_s)
