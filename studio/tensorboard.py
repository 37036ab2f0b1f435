"""The monitor's TensorBoard button: TensorBoard on a run folder, as a helper process.

``python -m tensorboard.main --logdir RUN --port 0`` (port 0: the system picks a free one);
TensorBoard prints the address it serves on ("TensorBoard 2.x at http://localhost:PORT/"),
which ``sig_url`` passes on. Stopped when another run folder is opened or the window closes.
"""

from __future__ import annotations

import importlib.util
import re
import sys

from PySide6.QtCore import QObject, QProcess, Signal

URL = re.compile(r"(https?://[^\s]+:\d+/?)")


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoard(QObject):
    sig_url = Signal(str)       # the address TensorBoard serves on
    sig_error = Signal(str)     # it could not start or stopped by itself
    sig_running = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.proc: QProcess | None = None
        self.logdir = ""
        self.url = ""
        self._out = ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    def start(self, logdir: str) -> bool:
        """Serve ``logdir``; False (with sig_error) when TensorBoard is not installed."""
        if self.running() and self.logdir == logdir:
            if self.url:
                self.sig_url.emit(self.url)
            return True
        self.stop()
        if not tensorboard_installed():
            self.sig_error.emit("TensorBoard is not installed: pip install tensorboard (then choose "
                                "“tensorboard” in Training › Report to, so runs write its event files).")
            return False
        self.logdir, self.url, self._out = logdir, "", ""
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.readyReadStandardOutput.connect(self._read)
        proc.finished.connect(self._finished)
        proc.start(sys.executable, ["-m", "tensorboard.main", "--logdir", logdir, "--port", "0", "--host", "127.0.0.1"])
        self.proc = proc
        self.sig_running.emit(True)
        return True

    def _read(self) -> None:
        if self.proc is None:
            return
        self._out = (self._out + bytes(self.proc.readAllStandardOutput()).decode("utf-8", "replace"))[-4000:]
        if not self.url:
            m = URL.search(self._out)
            if m:
                self.url = m.group(1)
                self.sig_url.emit(self.url)

    def _finished(self, code, _status) -> None:
        proc, self.proc = self.proc, None
        self.sig_running.emit(False)
        if proc is not None and not self._stopping:
            tail = self._out.strip().splitlines()[-1:] or [f"exit code {code}"]
            self.sig_error.emit(f"TensorBoard stopped: {tail[0]}")

    _stopping = False

    def stop(self) -> None:
        """End the process (waited for: no TensorBoard outlives the window)."""
        proc = self.proc
        if proc is None:
            return
        self._stopping = True
        try:
            proc.terminate()
            if not proc.waitForFinished(3000):
                proc.kill()
                proc.waitForFinished(2000)
        finally:
            self._stopping = False
            self.proc = None
            self.url = ""
            self.sig_running.emit(False)
