"""Runs tab: every run (the engine's run index plus the studio's recent list) with what tells runs
apart — data file, eval loss, duration, why it ended — and, for two or more selected runs, their
curves overlaid and the settings that differ (studio/compare_view.py)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.compare_view import RunsCompare
from studio.panels.base import Area, PanelDefaults, Studio
from studio.run_table import load_compare, load_runs
from studio.tasks import start_thread
from studio.widgets import fmt_duration, fmt_number, muted, scrolled_body
from studio.wording import window_text

COLUMNS = ["Run", "Status", "Why", "Method", "Model", "Data", "Steps", "Final loss", "Eval loss", "Duration",
           "Started"]

__all__ = ["COLUMNS", "RunsPanel", "load_runs"]


def row_texts(r: dict) -> list[str]:
    started = r.get("started")
    model = r.get("model") or ""
    return [r.get("name") or Path(r["run_dir"]).name, str(r.get("status") or "?"), window_text(r.get("reason") or ""),
            str(r.get("method") or ""), Path(model).name if "/" in model else model, r.get("data") or "",
            str(r.get("steps") or ""), fmt_number(r.get("final_loss")), fmt_number(r.get("eval_loss")),
            fmt_duration(r.get("duration")) if r.get("duration") is not None else "",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""]


class RunsPanel(QWidget, PanelDefaults):
    key, title, area = "runs", "Runs", Area.CENTRAL
    sig_open = Signal(str)         # show this run in the monitor
    sig_load_config = Signal(str)  # put this run's settings into the forms
    sig_resume = Signal(str)

    @classmethod
    def create(cls, studio: Studio) -> RunsPanel:
        panel = cls(studio.settings)
        panel.sig_open.connect(studio.runs.attach)
        panel.sig_open.connect(lambda _d: studio.show_panel("monitor"))
        panel.sig_load_config.connect(studio.files.load_run_config)
        panel.sig_resume.connect(studio.runs.resume_run_dir)
        studio.runs.sig_ended.connect(panel.refresh)
        studio.runs.sig_started.connect(lambda _d: panel.refresh())
        panel.refresh()
        return panel

    def plot_steps(self) -> list:
        return [self.compare.build_plots]

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.rows: list[dict] = []
        lay = scrolled_body(self, 4)  # the comparison needs room: a small window scrolls
        split = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.itemDoubleClicked.connect(lambda *_: self._emit(self.sig_open))
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        tl.addWidget(self.tree, 1)
        self.empty = muted("No runs yet. Start one and it appears here.")
        tl.addWidget(self.empty)
        row = QHBoxLayout()
        self.btn_open = QPushButton("Show in monitor")
        self.btn_open.clicked.connect(lambda: self._emit(self.sig_open))
        self.btn_load = QPushButton("Load its settings")
        self.btn_load.clicked.connect(lambda: self._emit(self.sig_load_config))
        self.btn_resume = QPushButton("Resume")
        self.btn_resume.clicked.connect(lambda: self._emit(self.sig_resume))
        self.hint = muted("Select two or more runs (Ctrl+click) to compare them.", wrap=False)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        for b in (self.btn_open, self.btn_load, self.btn_resume):
            row.addWidget(b)
        row.addSpacing(12)
        row.addWidget(self.hint)
        row.addStretch(1)
        row.addWidget(refresh)
        tl.addLayout(row)
        split.addWidget(top)
        self.compare = RunsCompare()
        self.compare.hide()
        split.addWidget(self.compare)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        lay.addWidget(split)
        self._task = self._compare_task = None
        self._selection_changed()

    # -- the list ----------------------------------------------------------------------------
    def refresh(self, *_) -> None:
        recent = self.settings.get("recent/runs") if self.settings else []
        self._task = start_thread(load_runs, recent, parent=self)
        self._task.sig_result.connect(self._on_rows)

    def _on_rows(self, rows: list[dict]) -> None:
        selected = set(self.selected_runs())
        self.rows = rows
        self.tree.blockSignals(True)
        self.tree.clear()
        for r in rows:
            item = QTreeWidgetItem(row_texts(r))
            item.setData(0, Qt.ItemDataRole.UserRole, r["run_dir"])
            item.setToolTip(0, r["run_dir"])
            item.setToolTip(2, window_text(r.get("reason") or ""))
            item.setToolTip(5, r.get("data_path") or "")
            self.tree.addTopLevelItem(item)
            item.setSelected(r["run_dir"] in selected)
        self.tree.blockSignals(False)
        for i in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(i)
        self.tree.setColumnWidth(2, min(self.tree.columnWidth(2), 260))
        self.empty.setVisible(not rows)
        self._selection_changed()

    def selected_runs(self) -> list[str]:
        return [i.data(0, Qt.ItemDataRole.UserRole) for i in self.tree.selectedItems()]

    def selected_run(self) -> str | None:
        runs = self.selected_runs()
        return runs[0] if len(runs) == 1 else None

    def select(self, run_dirs: list[str]) -> None:
        """Select these runs (by folder) — what Ctrl+click does."""
        want = {str(Path(d).resolve()) for d in run_dirs}
        self.tree.blockSignals(True)
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            item.setSelected(str(Path(item.data(0, Qt.ItemDataRole.UserRole)).resolve()) in want)
        self.tree.blockSignals(False)
        self._selection_changed()

    def _selection_changed(self):
        one = self.selected_run() is not None
        for b in (self.btn_open, self.btn_load, self.btn_resume):
            b.setEnabled(one)
        runs = self.selected_runs()
        self.hint.setVisible(len(runs) < 2)
        if len(runs) >= 2:
            self._compare_task = start_thread(load_compare, runs, parent=self)
            self._compare_task.sig_result.connect(self._on_compare)
        else:
            self.compare.hide()

    def _on_compare(self, items: list[dict]) -> None:
        if [i["run_dir"] for i in items] != self.selected_runs():
            return  # the selection moved on
        self.compare.set_runs(items)
        self.compare.show()

    def _emit(self, sig):
        run = self.selected_run()
        if run:
            sig.emit(run)
