"""Plain-language error messages and dialogs: what went wrong and what to do, never a traceback."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from studio.messages import plain_message

__all__ = ["plain_message", "show_error", "show_exception"]

def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """A non-blocking (window-modal) error box; returns it so tests can find and close it."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(message)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box


def show_exception(parent: QWidget | None, what: str, exc: BaseException) -> QMessageBox:
    return show_error(parent, "PEFT Studio", f"Could not {what}.\n\n{plain_message(exc)}")
