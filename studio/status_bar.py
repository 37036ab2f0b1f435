"""The status bar: whether Start may run (or the first field to fix), the ML libraries' readiness,
the run's state, and short messages from the run controller and the run files."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar

from studio.messages import plain_message

MESSAGE_MS = 5000


class StatusLine:
    def __init__(self, bar: QStatusBar):
        self.bar = bar
        self.validity = QLabel("")
        self.validity.setObjectName("validity")
        bar.addWidget(self.validity, 1)
        self.ml = QLabel("Loading ML libraries…")
        bar.addPermanentWidget(self.ml)
        self.state = QLabel("Idle")
        self.state.setObjectName("status-run-state")
        bar.addPermanentWidget(self.state)

    def show_message(self, text: str, ms: int = MESSAGE_MS) -> None:
        self.bar.showMessage(text, ms)

    def show_errors(self, errors: dict) -> None:
        """The form's problems ({path: message}) in one line, or that Start may run."""
        if errors:
            first_path, first_msg = next(iter(errors.items()))
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            self.validity.setText(f"Fix {first_path}: {first_msg}{more}")
        else:
            self.validity.setText("Ready to start")

    def show_state(self, state: str) -> None:
        self.state.setText(state.capitalize())

    def set_ml_ready(self, seconds: float | None = None) -> None:
        self.ml.setText("ML libraries ready" + (f" ({seconds:.1f} s)" if seconds else ""))

    def set_ml_failed(self, exc: BaseException) -> None:
        self.ml.setText("ML libraries missing")
        self.ml.setToolTip(plain_message(exc))
