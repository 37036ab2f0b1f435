"""Taking the user to a control: "Go to “Skip bad lines”" raises the panel that holds it, opens
the Advanced section it sits in, scrolls it into view and gives it the focus.

Controls are found by object name ``field:<run-file path>`` (the forms name every editor so, and
the panels name their own rich editors the same way), in the panel studio/wording.py says holds
the path's section.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QScrollArea, QWidget

from studio.forms import DataclassForm
from studio.wording import base_path, panel_of


def find_control(panel: QWidget, path: str) -> QWidget | None:
    """The widget that sets ``path`` inside ``panel`` (None when the panel has none)."""
    return panel.findChild(QWidget, f"field:{base_path(path)}")


def go_to(show_panel: Callable[[str], None], panels: dict, path: str) -> bool:
    """Bring the control for ``path`` into view and focus it. False when no control sets it."""
    key = panel_of(path)
    if key not in panels:
        return False
    show_panel(key)
    panel = panels[key]
    w = find_control(panel, path)
    if w is None:
        return False
    parent = w.parentWidget()
    while parent is not None:
        if isinstance(parent, DataclassForm) and parent.advanced_box.isAncestorOf(w):
            parent.set_advanced_visible(True)
        if isinstance(parent, QScrollArea):
            QTimer.singleShot(0, lambda area=parent: area.ensureWidgetVisible(w, 40, 40))
        parent = parent.parentWidget()
    w.setFocus()
    return True
