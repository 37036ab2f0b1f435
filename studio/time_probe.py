"""The time measurement behind the estimate panel's "Measure time" button.

It runs ``python -m engine estimate RUN.yaml --time-only --json`` in its own process: the probe
loads the model and trains a few real steps, which takes from seconds to minutes and gigabytes
of memory — neither belongs in the window's process or in the job helper that keeps the memory
estimate live. A process can also be cancelled at once (killed), whatever it is doing.

The engine writes ``progress: …`` lines on stderr while it works and the JSON result on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.workers import init_bridge, post_to_ui

PROGRESS = "progress: "


def probe_command(run_yaml: str) -> list[str]:
    return [sys.executable, "-m", "engine", "estimate", str(run_yaml), "--time-only", "--json"]


def failure_text(code: int | None, stderr_tail: list[str]) -> str:
    """The engine's own message (``error: …``) when it gave one; else its last words."""
    for line in reversed(stderr_tail):
        if line.startswith("error: "):
            return line[len("error: "):]
    if code is not None and code < 0:
        return f"The measurement was ended by signal {-code} (out of memory?)."
    last = next((ln for ln in reversed(stderr_tail) if ln.strip() and not ln.startswith(PROGRESS)), "")
    return f"The measurement failed (exit code {code})" + (f": {last.strip()}" if last else ".")


class TimeProbe(QObject):
    """One measurement at a time; ``start`` while one runs cancels it first."""

    sig_progress = Signal(str)
    sig_done = Signal(dict)      # the engine's ``time`` result
    sig_failed = Signal(str)     # a plain-language reason

    def __init__(self, parent=None):
        super().__init__(parent)
        init_bridge()   # results come back through it; it must be made in the UI thread
        self._proc: subprocess.Popen | None = None
        self._generation = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, cfg, cwd: str | None = None) -> None:
        from studio.supervisor import child_env

        self.cancel()
        self._generation += 1
        gen = self._generation
        try:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="peft-studio-time-", delete=False)
            tmp.close()
            cfg.save(tmp.name)
        except OSError as e:
            self.sig_failed.emit(f"Could not write the run file for the measurement: {e.strerror or e}")
            return
        try:
            proc = subprocess.Popen(probe_command(tmp.name), cwd=cwd or os.getcwd(), env=child_env(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as e:
            os.unlink(tmp.name)
            self.sig_failed.emit(f"Could not start the measurement: {e.strerror or e}")
            return
        self._proc = proc
        threading.Thread(target=self._watch, args=(proc, gen, tmp.name), name="studio-time-probe",
                         daemon=True).start()

    def cancel(self) -> None:
        """Kill a running measurement (its whole process group); its result is dropped."""
        self._generation += 1
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _watch(self, proc: subprocess.Popen, gen: int, run_yaml: str) -> None:
        tail: deque[str] = deque(maxlen=40)
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        reader.start()
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            if line.startswith(PROGRESS):
                post_to_ui(self._deliver, (gen, "progress", line[len(PROGRESS):]))
        code = proc.wait()
        reader.join()
        Path(run_yaml).unlink(missing_ok=True)
        if code == 0:
            try:
                result = json.loads(b"".join(out).decode("utf-8"))["time"]
            except (ValueError, KeyError) as e:
                post_to_ui(self._deliver, (gen, "failed", f"The measurement's result could not be read ({e})."))
                return
            post_to_ui(self._deliver, (gen, "done", result))
        else:
            post_to_ui(self._deliver, (gen, "failed", failure_text(code, list(tail))))

    def _deliver(self, item) -> None:
        gen, kind, value = item
        if gen != self._generation:   # cancelled or superseded
            return
        if kind == "progress":
            self.sig_progress.emit(value)
            return
        self._proc = None
        (self.sig_done if kind == "done" else self.sig_failed).emit(value)
