"""Smoke mode: start the preselected (demo) run, wait for it to end, screenshot, quit."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication


class SmokeRun(QObject):
    def __init__(self, win, screenshot: str | None, timeout_s: float):
        super().__init__(win)
        self.win, self.screenshot = win, screenshot
        self.exit_code = 1
        self._done = False
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.setInterval(int(timeout_s * 1000))
        self._deadline.timeout.connect(self._timed_out)

    def start(self):
        runs = self.win.runs
        runs.sig_state.connect(self._on_state)
        runs.sig_failed.connect(lambda info: print(f"studio smoke: run failed: {info.get('error')} — "
                                                  f"{info.get('hint')}\n{info.get('log_tail')}", file=sys.stderr))
        self._deadline.start()
        if not runs.start():
            print("studio smoke: the demo run could not start: "
                  f"{self.win.config_model.errors}", file=sys.stderr)
            self._finish(1)

    def _on_state(self, state: str):
        if state in ("finished", "stopped", "failed"):
            # let the monitor's 10 Hz timer draw the last points before the picture is taken
            QTimer.singleShot(400, lambda: self._finish(0 if state == "finished" else 1))

    def _timed_out(self):
        print("studio smoke: timed out", file=sys.stderr)
        self.win.runs.kill()
        self._finish(2)

    def _finish(self, code: int):
        if self._done:
            return
        self._done = True
        self.exit_code = code
        if self.screenshot:
            save_screenshot(self.win, self.screenshot)
        self.win.shutdown()
        QApplication.instance().exit(code)


def save_screenshot(widget, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    monitor = getattr(widget, "monitor", None)
    if monitor is not None:
        monitor.refresh_all()
    QApplication.processEvents()
    if not widget.grab().save(str(path)):
        print(f"studio smoke: could not write {path}", file=sys.stderr)
    else:
        print(f"studio smoke: screenshot saved to {path}", file=sys.stderr)


class StillShot(QObject):
    """``--screenshot`` without a run: wait until the panels' background jobs are done, save, quit."""

    def __init__(self, win, path: str, wait_s: float):
        super().__init__(win)
        self.win, self.path = win, path
        self._elapsed = 0.0
        self._wait_s = wait_s
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._poll)

    def start(self):
        self._timer.start()

    def _jobs_busy(self) -> bool:
        from studio.tasks import LatestJob

        return any(j.busy for j in self.win.findChildren(LatestJob))

    def _poll(self):
        self._elapsed += 0.5
        settled = self._elapsed >= 3 and self.win.plots_ready() and not self._jobs_busy()
        if settled or self._elapsed >= self._wait_s:
            self._timer.stop()
            QTimer.singleShot(300, self._shoot)  # one more paint after the last result

    def _shoot(self):
        save_screenshot(self.win, self.path)
        self.win.shutdown()
        QApplication.instance().exit(0)
