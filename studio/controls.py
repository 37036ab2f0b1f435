"""Taking the user to a control: "Go to “Skip bad lines”" raises the panel that holds it, opens
the Advanced section it sits in, scrolls it into view and gives it the focus; ``set_control`` also
sets it (a one-click fix offered in another panel).

Controls are found by object name ``field:<run-file path>`` (the forms name every editor so, and
the panels name their own rich editors the same way), in the panel studio/wording.py says holds
the path's section.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QScrollArea, QWidget

from studio.forms import DataclassForm, FieldEditor
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


def set_control(show_panel: Callable[[str], None], panels: dict, path: str, value) -> bool:
    """Set the form control for ``path`` to ``value`` (a one-click fix of another panel's setting,
    e.g. the Data tab's "Set Training › Task to dpo") and take the user there; the config follows
    through the control's own change signal. False when no form editor sets it."""
    panel = panels.get(panel_of(path))
    w = find_control(panel, path) if panel is not None else None
    editor = w.parentWidget() if w is not None else None
    if not isinstance(editor, FieldEditor):
        return False
    editor.set_value(value)
    return go_to(show_panel, panels, path)
