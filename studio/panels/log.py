"""Log panel: what the engine said (log, warning, checkpoint, result events and its stderr).

Lines wrap (nothing to scroll sideways for), each failure is written once (the run controller
writes it; the ``failed`` event is not repeated), and what libraries print — FutureWarnings,
progress bars, kernel notices — goes to a separate, folded "Library messages" view
(studio/logtext.py), so the run's own lines are the ones in view."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QTextCursor, QTextOption
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from studio.logtext import is_library_line
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
    # "failed" is written by the run controller, once for every way a run can fail
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
        self.text = self._view()
        lay.addWidget(self.text, 3)
        self.library = self._view()
        self.library.setObjectName("log-library")
        self.library.hide()
        lay.addWidget(self.library, 2)
        row = QHBoxLayout()
        self.library_btn = QPushButton("Library messages (0)")
        self.library_btn.setCheckable(True)
        self.library_btn.setToolTip("What transformers, torch and other libraries printed: deprecation "
                                    "warnings and progress bars, kept apart from the run's own lines")
        self.library_btn.toggled.connect(self.library.setVisible)
        row.addWidget(self.library_btn)
        row.addStretch(1)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        row.addWidget(clear)
        lay.addLayout(row)
        self._step_every = 10
        self._library_lines = 0
        self._prev_library = False

    @staticmethod
    def _view() -> QPlainTextEdit:
        view = QPlainTextEdit()
        view.setReadOnly(True)
        view.setMaximumBlockCount(MAX_LINES)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        view.setFont(font)
        # long lines wrap at the panel's width: a log is read down, never scrolled sideways
        view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        view.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        return view

    def clear(self) -> None:
        self.text.clear()
        self.library.clear()
        self._library_lines = 0
        self.library_btn.setText("Library messages (0)")

    def append(self, line: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when or time.time()))
        self._prev_library = is_library_line(line, self._prev_library)
        view = self.library if self._prev_library else self.text
        if self._prev_library:
            self._library_lines += 1
            self.library_btn.setText(f"Library messages ({self._library_lines})")
        bar = view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        view.appendPlainText(f"{stamp}  {line}")
        if at_end:  # follow the tail unless the user scrolled up to read
            view.moveCursor(QTextCursor.MoveOperation.End)

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

    def library_text(self) -> str:
        return self.library.toPlainText()
