"""The status bar: whether Start may run (or the first thing to fix, by the control's name, with a
button that goes there), the ML libraries' readiness, the run's state, and short messages from
the run controller and the run files."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QLabel, QSizePolicy, QStatusBar, QToolButton

from studio.messages import plain_message
from studio.wording import control_label, control_name, window_text

MESSAGE_MS = 5000
ACTIVE_STATES = ("starting", "running", "stopping")


class StatusLine:
    def __init__(self, bar: QStatusBar, go_to: Callable[[str], bool] | None = None):
        self.bar = bar
        self._go_to = go_to
        self.validity = QLabel("")
        self.validity.setObjectName("validity")
        # a long reason must never widen the window (its minimum size must fit a laptop)
        self.validity.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.validity, 1)
        self.go = QToolButton()
        self.go.setObjectName("status-go")
        self.go.setAutoRaise(True)
        self.go.clicked.connect(self._go)
        self.go.hide()
        bar.addWidget(self.go)
        self.ml = QLabel("Loading ML libraries…")
        bar.addPermanentWidget(self.ml)
        self.state = QLabel("Idle")
        self.state.setObjectName("status-run-state")
        bar.addPermanentWidget(self.state)
        self._errors: dict = {}
        self._warnings: dict = {}
        self._run_state = "idle"
        self._target = ""

    def show_message(self, text: str, ms: int = MESSAGE_MS) -> None:
        self.bar.showMessage(window_text(text), ms)

    def show_errors(self, errors: dict) -> None:
        """The form's problems ({path: message}); the line says the first by its control's name."""
        self._errors = dict(errors)
        self._update()

    def show_warnings(self, warnings: dict) -> None:
        self._warnings = dict(warnings)
        self._update()

    def show_state(self, state: str) -> None:
        self._run_state = state
        self.state.setText(state.capitalize())
        self._update()

    def _update(self) -> None:
        target = ""
        if self._run_state in ACTIVE_STATES:
            text = "A run is in progress: Start is available again when it ends."
        elif self._errors:
            path, msg = next(iter(self._errors.items()))
            more = f" (and {len(self._errors) - 1} more)" if len(self._errors) > 1 else ""
            text = f"Start is off — {control_name(path)}: {window_text(msg)}{more}"
            target = path
        elif self._warnings:
            path, msg = next(iter(self._warnings.items()))
            more = f" (and {len(self._warnings) - 1} more)" if len(self._warnings) > 1 else ""
            text = f"Ready to start — ⚠ {control_name(path)}: {window_text(msg)}{more}"
            target = path
        else:
            text = "Ready to start"
        self.validity.setText(text)
        self.validity.setToolTip(text)
        self._target = target
        self.go.setText(f"Go to {control_label(target)}" if target else "")
        self.go.setVisible(bool(target) and self._go_to is not None)

    def _go(self) -> None:
        if self._target and self._go_to is not None:
            self._go_to(self._target)

    def set_ml_ready(self, seconds: float | None = None) -> None:
        self.ml.setText("ML libraries ready" + (f" ({seconds:.1f} s)" if seconds and seconds >= 0.05 else ""))

    def set_ml_failed(self, exc: BaseException) -> None:
        self.ml.setText("ML libraries missing")
        self.ml.setToolTip(plain_message(exc))
