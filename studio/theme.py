"""Light/dark palette handling and the few colours derived from it.

Widgets take their colours from the application palette; nothing else in the studio names a
colour except the plot series (mid-luminance hues that read on both backgrounds) and the error
red in forms. The system scheme is followed when the platform reports one; ``--theme dark``
forces Fusion's dark palette (useful for screenshots and platforms that report nothing).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

# Series colours: distinguishable, and legible on white and on near-black.
SERIES = {
    "train": "#3d7bd9",
    "train_raw": "#3d7bd9",
    "eval": "#e0822d",
    "lr": "#2f9e68",
    "grad": "#9b59b6",
    "tps": "#d64590",
    "mem": "#3d7bd9",
    "mem2": "#8a8f98",
    "hist": "#3d7bd9",
    "limit": "#d64545",
}

_DARK = {
    QPalette.ColorRole.Window: "#2b2d30",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1e1f22",
    QPalette.ColorRole.AlternateBase: "#26282b",
    QPalette.ColorRole.ToolTipBase: "#3c3f41",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#8a8f98",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#35373b",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Link: "#6aa6ff",
    QPalette.ColorRole.Highlight: "#3d6fb6",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Light: "#45484d",
    QPalette.ColorRole.Midlight: "#3a3d41",
    QPalette.ColorRole.Mid: "#2f3134",
    QPalette.ColorRole.Dark: "#1a1b1d",
    QPalette.ColorRole.Shadow: "#000000",
}


def dark_palette() -> QPalette:
    pal = QPalette()
    for role, color in _DARK.items():
        pal.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7d82"))
    return pal


def apply_theme(app: QApplication, mode: str = "system") -> None:
    """``system`` follows the platform's scheme; ``light``/``dark`` force one."""
    app.setStyle("Fusion")  # the same look and the same palette semantics on every platform
    scheme = app.styleHints().colorScheme()
    dark = mode == "dark" or (mode == "system" and scheme == Qt.ColorScheme.Dark)
    app.setPalette(dark_palette() if dark else app.style().standardPalette())


def is_dark(widget=None) -> bool:
    pal = widget.palette() if widget is not None else QApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def plot_colors(widget=None) -> tuple[QColor, QColor]:
    """(background, foreground) for pyqtgraph, taken from the palette."""
    pal = widget.palette() if widget is not None else QApplication.palette()
    return pal.color(QPalette.ColorRole.Base), pal.color(QPalette.ColorRole.Text)


def trained_background(widget=None) -> QColor:
    """Background of trained (loss-bearing) tokens: the highlight colour, softened."""
    pal = widget.palette() if widget is not None else QApplication.palette()
    hl = QColor(pal.color(QPalette.ColorRole.Highlight))
    base = pal.color(QPalette.ColorRole.Base)
    a = 0.45 if is_dark(widget) else 0.28
    return QColor(int(hl.red() * a + base.red() * (1 - a)), int(hl.green() * a + base.green() * (1 - a)),
                  int(hl.blue() * a + base.blue() * (1 - a)))


def muted_text(widget=None) -> QColor:
    pal = widget.palette() if widget is not None else QApplication.palette()
    return pal.color(QPalette.ColorRole.PlaceholderText)
