"""pyqtgraph, imported only after the window is on screen (it costs about half a second).

Panels build their plots in a ``build_plots()`` that the main window calls right after the
first paint; until then a plain placeholder holds the plot's place in the layout.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QGraphicsItem, QSizePolicy

from studio import theme

pg.setConfigOptions(antialias=True)


MIN_LABEL_GAP_PX = 44  # between two major tick labels of a horizontal axis ("1000" is ~30 px)


class SpacedAxis(pg.AxisItem):
    """A horizontal axis whose major tick labels never run together. pyqtgraph asks for at least
    2.25 intervals however short the axis, so on a ~100-px plot (the Monitor's small plots at
    1280×720) "100", "200", "300" were drawn into one another ("100200300"). Here the major step
    grows through pyqtgraph's 1-2-5 series until its labels are MIN_LABEL_GAP_PX apart."""

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph's name
        levels = super().tickSpacing(minVal, maxVal, size)
        dif = abs(maxVal - minVal)
        if not levels or dif == 0 or size <= 0 or self.orientation not in ("bottom", "top"):
            return levels
        need = MIN_LABEL_GAP_PX * dif / size  # the least step whose labels do not touch
        if levels[0][0] >= need:
            return levels
        p10 = 10.0 ** math.floor(math.log10(need))
        major = next(m * p10 for m in (1, 2, 5, 10) if m * p10 >= need)
        return [(major, 0), (major / 2, 0)]


class ThemedPlot(pg.PlotWidget):
    """A PlotWidget whose background and axes follow the palette (light and dark)."""

    def __init__(self, title: str = "", parent=None, **kw):
        axes = kw.pop("axisItems", None) or {}
        axes.setdefault("bottom", SpacedAxis("bottom"))
        super().__init__(parent, axisItems=axes, **kw)
        self._title = title
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.getPlotItem().showGrid(x=True, y=True, alpha=0.15)
        self.getPlotItem().setMenuEnabled(False)
        for name in ("left", "bottom"):
            # The grid makes each axis item cover the whole plot, so every curve update repainted
            # the axes (replaying their text and lines: most of a live plot's cost). Cached as a
            # pixmap, an axis repaints as a blit until its range really changes.
            self.getPlotItem().getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.apply_palette()

    def apply_palette(self):
        bg, fg = theme.plot_colors(self)
        self.setBackground(bg)
        item = self.getPlotItem()
        for name in ("left", "bottom"):
            ax = item.getAxis(name)
            ax.setPen(pg.mkPen(fg, width=1))
            ax.setTextPen(pg.mkPen(fg))
        if self._title:
            item.setTitle(self._title, color=fg.name(), size="10pt")

    def changeEvent(self, e):
        # GraphicsView.__init__ changes the palette before the plot item exists
        if e.type() == QEvent.Type.PaletteChange and getattr(self, "plotItem", None) is not None:
            self.apply_palette()
        super().changeEvent(e)


def alpha(color: str, a: int):
    c = pg.mkColor(color)
    c.setAlpha(a)
    return c
