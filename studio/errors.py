"""Plain-language error messages and dialogs: what went wrong and what to do, never a traceback."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

# Exception types whose str() is already written for people (engine.config/models/data promise it).
_USER_FACING = ("ConfigError", "ModelError", "DataError")


def plain_message(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip()
    if name in _USER_FACING:
        return text
    if isinstance(exc, FileNotFoundError):
        return f"The file {exc.filename or text} does not exist."
    if isinstance(exc, PermissionError):
        return f"Permission denied: {exc.filename or text}. Choose a location you can write to."
    if isinstance(exc, ImportError):
        return (f"A component is not installed ({exc.name or text}). Run `make setup` to install "
                "the studio's dependencies.")
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory for this step."
    first = text.splitlines()[0] if text else ""
    if len(first) > 300:
        first = first[:300] + "…"
    return f"Something went wrong ({name}){': ' + first if first else '.'}"


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
