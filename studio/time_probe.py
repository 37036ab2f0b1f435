"""The time measurement behind the estimate panel's "Measure time" button.

It runs ``python -m engine estimate RUN.yaml --time-only --json`` as a command task
(studio/tasks.py ``start_command``): the probe loads the model and trains a few real steps, which
takes from seconds to minutes and gigabytes of memory — neither belongs in the window's process
or in the job helper that keeps the memory estimate live. A process can also be cancelled at once
(killed), whatever it is doing.

The engine writes wire progress lines (engine/wire.py) on stderr while it works and its JSON
result on stdout; a failure is its ``error: …`` line (the CLI's message) or, failing that, the
exit code and its last words.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine import wire
from studio.tasks import Task, start_command


def probe_command(run_yaml: str) -> list[str]:
    return [sys.executable, "-m", "engine", "estimate", str(run_yaml), "--time-only", "--json"]


def _is_wire(line: str) -> bool:
    try:
        return wire.decode(line) is not None
    except wire.WireError:
        return True


def failure_text(code: int | None, stderr_tail: list[str]) -> str:
    """The engine's own message (``error: …``) when it gave one; else its last words."""
    for line in reversed(stderr_tail):
        if line.startswith("error: "):
            return line[len("error: "):]
    if code is not None and code < 0:
        return f"The measurement was ended by signal {-code} (out of memory?)."
    last = next((ln for ln in reversed(stderr_tail) if ln.strip() and not _is_wire(ln)), "")
    return f"The measurement failed (exit code {code})" + (f": {last.strip()}" if last else ".")


def probe_failure(code: int | None, stderr_tail: list[str]) -> dict:
    """``failure_text`` as a wire error; the CLI's ``error:`` line is a user error (a bad run file,
    a missing model), anything else is not."""
    said = any(line.startswith("error: ") for line in stderr_tail)
    return wire.error(failure_text(code, stderr_tail), error_type="ProbeError", user_error=said)


def _parse(stdout: str) -> dict:
    return json.loads(stdout)["time"]


class TimeProbe(QObject):
    """One measurement at a time; ``start`` while one runs cancels it first."""

    sig_progress = Signal(str)
    sig_done = Signal(object)    # a dict: the engine's ``time`` result
    sig_failed = Signal(str)     # a plain-language reason

    def __init__(self, parent=None):
        super().__init__(parent)
        self.task: Task | None = None
        self._command = None

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    @property
    def process(self):
        """The probe's process (a Popen) while one was started, else None."""
        return self._command.proc if self._command is not None else None

    def start(self, cfg, cwd: str | None = None) -> None:
        self.cancel()
        if self.task is not None:
            self.task.deleteLater()
            self.task = self._command = None
        try:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="peft-studio-time-", delete=False)
            tmp.close()
            cfg.save(tmp.name)
        except OSError as e:
            self.sig_failed.emit(f"Could not write the run file for the measurement: {e.strerror or e}")
            return
        try:
            task, command = start_command(probe_command(tmp.name), _parse, probe_failure, name="time-probe",
                                          cwd=cwd or os.getcwd(), on_exit=lambda: Path(tmp.name).unlink(missing_ok=True),
                                          parent=self)
        except OSError as e:
            os.unlink(tmp.name)
            self.sig_failed.emit(f"Could not start the measurement: {e.strerror or e}")
            return
        self.task, self._command = task, command
        task.sig_status.connect(self.sig_progress)
        task.sig_result.connect(self.sig_done)
        task.sig_error.connect(lambda e: self.sig_failed.emit(e.message))

    def cancel(self) -> None:
        """Kill a running measurement (its whole process group); its result is dropped."""
        if self.task is not None:
            self.task.cancel()
