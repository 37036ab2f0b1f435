"""The error dialog: what went wrong and what to do, never a traceback (texts come from
studio/messages.py's ``plain_message``), in the window's words (run-file keys become the controls
that set them, studio/wording.py), with a button that goes to the first control it names."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from studio.wording import control_label, named_fields, window_text


def show_error(parent: QWidget | None, title: str, message: str, details: str = "",
               go_to: Callable[[str], bool] | None = None, file_keys: bool = False) -> QMessageBox:
    """A non-blocking (window-modal) error box; returns it so tests can find and close it.
    ``file_keys``: the message is about a file the user edits (a run file), so its run-file keys
    stay as written there instead of becoming the window's control names, with no "Go to"."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    fields = [] if file_keys else named_fields(message)
    box.setText(message if file_keys else window_text(message))
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    if fields and go_to is not None:
        go = box.addButton(f"Go to {control_label(fields[0])}", QMessageBox.ButtonRole.ActionRole)
        go.clicked.connect(lambda: go_to(fields[0]))
    box.open()
    return box
