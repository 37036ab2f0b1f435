"""Several runs side by side: their loss, eval-loss and learning-rate curves overlaid, and a table
of only the settings that differ between them (studio/run_table.py reads both from the runs'
folders). The Runs tab shows it for a multi-selection; other views may embed it (``set_runs``).
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.run_table import config_diff
from studio.widgets import PlotSlot, fmt_number, muted
from studio.wording import control_label, place

# One colour per run, readable on light and dark backgrounds.
RUN_COLORS = ["#3d7bd9", "#e0822d", "#2f9e68", "#d64590", "#9b59b6", "#c9a227", "#17a2b8", "#8a8f98"]
PLOTS = {"loss": "Training loss", "eval_loss": "Eval loss", "lr": "Learning rate"}


def _value_text(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return fmt_number(v, 4)
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "[]"
    if isinstance(v, dict):
        return ", ".join(f"{k} ← {c}" for k, c in v.items()) or "{}"
    return str(v)


def setting_label(path: str) -> str:
    """A config path as the window names it: ``Learning rate (Training panel)``."""
    return f"{control_label(path)} ({place(path)})"


class RunsCompare(QWidget):
    """The overlay plots and the differing-settings table for a list of runs."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.legend = QLabel("")
        self.legend.setObjectName("compare-legend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.legend)
        grid = QGridLayout()
        self.slots = {k: PlotSlot(min_height=110) for k in PLOTS}
        for i, key in enumerate(PLOTS):
            grid.addWidget(self.slots[key], 0, i)
        lay.addLayout(grid, 3)
        lay.addWidget(muted("Settings that differ (the rest are the same):"))
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("compare-diff")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(90)
        lay.addWidget(self.table, 2)
        self.plots: dict = {}
        self.runs: list[dict] = []
        self.diff: list[tuple[str, list]] = []

    def build_plots(self) -> None:
        if self.plots:
            return
        from studio.plots import ThemedPlot

        for key, title in PLOTS.items():
            p = ThemedPlot(title)
            p.setLabel("bottom", "step")
            p.getPlotItem().setClipToView(True)
            self.slots[key].fill(p)
            self.plots[key] = p
        self._draw()

    def set_runs(self, runs: list[dict]) -> None:
        """``runs``: ``{run_dir, name, curves, config}`` each (run_table.load_compare)."""
        self.runs = list(runs)
        self.diff = config_diff([r.get("config") or {} for r in self.runs])
        names = [f'<span style="color:{RUN_COLORS[i % len(RUN_COLORS)]}">■</span>&nbsp;{html.escape(r["name"])}'
                 for i, r in enumerate(self.runs)]
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(names))
        self._fill_table()
        self._draw()

    def _fill_table(self) -> None:
        t = self.table
        t.clear()
        t.setColumnCount(len(self.runs))
        t.setHorizontalHeaderLabels([r["name"] for r in self.runs])
        for i in range(len(self.runs)):
            t.horizontalHeaderItem(i).setForeground(QColor(RUN_COLORS[i % len(RUN_COLORS)]))
            t.horizontalHeaderItem(i).setToolTip(self.runs[i]["run_dir"])
        rows = self.diff or [("", ["the same settings"] * len(self.runs))]
        t.setRowCount(len(rows))
        t.setVerticalHeaderLabels([setting_label(p) if p else "" for p, _ in rows])
        for r, (_path, values) in enumerate(rows):
            for c, v in enumerate(values):
                item = QTableWidgetItem(_value_text(v) if _path else v)
                item.setToolTip(item.text())
                t.setItem(r, c, item)

    def _draw(self) -> None:
        if not self.plots:
            return
        import pyqtgraph as pg

        for key, plot in self.plots.items():
            plot.clear()
            for i, run in enumerate(self.runs):
                xs, ys = (run.get("curves") or {}).get(key) or ([], [])
                color = RUN_COLORS[i % len(RUN_COLORS)]
                kw = {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": None} \
                    if key == "eval_loss" else {}
                plot.plot(xs, ys, pen=pg.mkPen(color, width=2), **kw)
            plot.getPlotItem().enableAutoRange()

    def points(self, key: str) -> list[int]:
        """Points drawn per run on plot ``key`` (tests, the walk)."""
        if key not in self.plots:
            return []
        return [len(item.xData) if item.xData is not None else 0 for item in self.plots[key].getPlotItem().listDataItems()]
