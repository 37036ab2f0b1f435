"""Log panel: what the engine said (log, warning, checkpoint, result events and its stderr)."""

from __future__ import annotations

import time

from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from studio.panels.base import Area, PanelDefaults, Studio
from studio.widgets import fmt_number

MAX_LINES = 5000  # a week-long run must not grow the widget without bound


def event_line(ev: dict) -> str | None:
    """One readable line for an event, or None for events the log does not show."""
    kind = ev.get("event")
    if kind == "log":
        return ev.get("message", "")
    if kind == "warning":
        return f"Warning: {ev.get('message', '')}"
    if kind == "started":
        return (f"Started on {ev.get('device', '?')}: {ev.get('total_steps', '?')} steps, "
                f"{ev.get('trainable_params', 0):,} trainable parameters")
    if kind == "eval":
        return f"Step {ev.get('step')}: eval loss {fmt_number(ev.get('eval_loss'))}"
    if kind == "checkpoint":
        return f"Checkpoint at step {ev.get('step')}: {ev.get('path')}"
    if kind == "finished":
        return f"Finished. Adapter saved in {ev.get('adapter_dir')}"
    if kind == "stopped":
        return f"Stopped at step {ev.get('step')}. Adapter saved in {ev.get('adapter_dir')}"
    if kind == "failed":
        hint = ev.get("hint")
        return f"Failed: {ev.get('error')}" + (f" — {hint}" if hint else "")
    return None


class LogPanel(QWidget, PanelDefaults):
    key, title, area = "log", "Log", Area.BOTTOM
    scrollable = False  # a text view scrolls itself

    @classmethod
    def create(cls, studio: Studio) -> LogPanel:
        panel = cls()
        studio.runs.sig_event.connect(panel.on_event)
        studio.runs.sig_log.connect(panel.append)
        return panel

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.text.setFont(font)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        lay.addWidget(self.text)
        row = QHBoxLayout()
        row.addStretch(1)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.text.clear)
        row.addWidget(clear)
        lay.addLayout(row)
        self._step_every = 10

    def append(self, line: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when or time.time()))
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self.text.appendPlainText(f"{stamp}  {line}")
        if at_end:  # follow the tail unless the user scrolled up to read
            self.text.moveCursor(QTextCursor.MoveOperation.End)

    def on_event(self, ev: dict) -> None:
        if ev.get("event") == "started":
            total = ev.get("total_steps") or 0
            self._step_every = max(1, total // 25) if total else 10
        if ev.get("event") == "step":
            step = ev.get("step") or 0
            if step % self._step_every == 0 or step == 1:
                self.append(f"Step {step}: loss {fmt_number(ev.get('loss'))}, lr {fmt_number(ev.get('lr'), 3)}",
                            ev.get("time"))
            return
        line = event_line(ev)
        if line:
            self.append(line, ev.get("time"))

    def plain_text(self) -> str:
        return self.text.toPlainText()
