"""``python -m studio.job_server [MODULE]``: the helper process that runs studio/jobs.py functions
(or those of MODULE's ``JOBS`` table: tests serve their own).

It speaks wire (engine/wire.py) on stdin/stdout: ``request`` lines in, ``progress``/``partial``
lines and one ``result`` or ``error`` per request out; a ``cancel`` line sets the request's
interruption flag, which the job sees through ``state.is_interruption_requested()``. Requests run
one at a time, in order. Libraries that print would corrupt the stream, so the protocol gets a
private copy of fd 1 and fd 1 itself is pointed at stderr. The helper exits when its stdin closes
(the studio has gone), after interrupting the job in progress.
"""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading

from engine import wire


class _Server:
    def __init__(self, out, jobs: dict):
        self.out = out
        self.jobs = jobs
        self._write_lock = threading.Lock()
        self._interrupts: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.requests: queue.Queue = queue.Queue()

    def send(self, msg: dict) -> None:
        with self._write_lock:
            try:
                wire.write(self.out, msg)
            except (BrokenPipeError, ValueError):
                pass  # the studio is gone; the reader thread ends the loop

    def interrupt_for(self, job_id: int) -> threading.Event:
        with self._lock:
            return self._interrupts.setdefault(job_id, threading.Event())

    def read_requests(self, inp) -> None:
        """Reader thread: requests into the queue, cancels straight to their flags."""
        for line in inp:
            try:
                msg = wire.decode(line)
            except wire.WireError as e:
                print(f"job server: {e}", file=sys.stderr)
                continue
            if msg is None:
                continue
            if msg["type"] == "cancel":
                self.interrupt_for(msg["id"]).set()
            elif msg["type"] == "request":
                self.requests.put(msg)
        with self._lock:  # the studio is gone: stop whatever runs, then exit
            for ev in self._interrupts.values():
                ev.set()
        self.requests.put(None)

    def run(self, msg: dict) -> bool:
        """Run one request and send its reply; False when the studio has gone (stop serving)."""
        from studio.messages import error_message
        from studio.task_state import TaskState

        job_id = msg["id"]
        interrupt = self.interrupt_for(job_id)
        state = TaskState(report=lambda m: self.send({**m, "id": job_id}), interrupt=interrupt)
        try:
            fn = self.jobs.get(msg["job"])
            if fn is None:
                raise KeyError(f"no job called {msg['job']!r}")
            value = fn(state, *msg["args"])
            reply = wire.result(value, id=job_id)
            line = wire.encode(reply)  # fails here, not half-way through a write
        except BaseException as e:  # every failure goes back as a message; the helper lives on
            reply = error_message(e, id=job_id)
            line = wire.encode(reply)
        with self._lock:
            self._interrupts.pop(job_id, None)
        with self._write_lock:
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                return False
        return True


def main(argv: list[str]) -> int:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = _Server(out, importlib.import_module(argv[0] if argv else "studio.jobs").JOBS)
    # The reader thread owns the real stdin and sys.stdin becomes /dev/null: a job that forks
    # workers (datasets' map with num_proc: the Data tab's full report) would otherwise deadlock,
    # since a forked multiprocessing child first closes sys.stdin, whose lock the reader thread,
    # blocked in readline, held at the fork.
    requests_in, sys.stdin = sys.stdin, open(os.devnull, encoding="utf-8")  # noqa: SIM115 - for the process's life
    threading.Thread(target=server.read_requests, args=(requests_in,), name="job-server-stdin",
                     daemon=True).start()
    while True:
        msg = server.requests.get()
        if msg is None or not server.run(msg):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
