"""Runs panel: recent runs (the engine's run index plus the studio's own recent list)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.runs import RunIndex, summarize
from studio.panels.base import Area, PanelDefaults, Studio
from studio.tasks import start_thread
from studio.widgets import fmt_number, muted

COLUMNS = ["Run", "Status", "Method", "Model", "Steps", "Final loss", "Started"]


def load_runs(state, recent: list[str], limit: int = 50) -> list[dict]:
    """Task: rows for the list, newest first: the engine's run index plus the studio's recent list."""
    rows: dict[str, dict] = {}
    try:
        for r in RunIndex().list(limit):
            rows[str(Path(r["run_dir"]).resolve())] = r
    except Exception:  # noqa: BLE001 - a locked or corrupt index must not hide the recent list
        pass
    for d in recent:
        key = str(Path(d).resolve())
        if key in rows or not Path(d).exists():
            continue
        try:
            rows[key] = summarize(d)
        except Exception:  # noqa: BLE001 - an unreadable folder is still listed, as unknown
            rows[key] = {"run_dir": key, "name": Path(d).name, "status": "?"}
    return sorted(rows.values(), key=lambda r: r.get("started") or 0, reverse=True)[:limit]


class RunsPanel(QWidget, PanelDefaults):
    key, title, area = "runs", "Runs", Area.CENTRAL
    scrollable = False  # the list scrolls itself
    sig_open = Signal(str)         # show this run in the monitor
    sig_load_config = Signal(str)  # put this run's settings into the forms
    sig_resume = Signal(str)

    @classmethod
    def create(cls, studio: Studio) -> RunsPanel:
        panel = cls(studio.settings)
        panel.sig_open.connect(studio.runs.attach)
        panel.sig_load_config.connect(studio.files.load_run_config)
        panel.sig_resume.connect(studio.runs.resume_run_dir)
        studio.runs.sig_ended.connect(panel.refresh)
        panel.refresh()
        return panel

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemDoubleClicked.connect(lambda *_: self._emit(self.sig_open))
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        lay.addWidget(self.tree, 1)
        self.empty = muted("No runs yet. Start one and it appears here.")
        lay.addWidget(self.empty)
        row = QHBoxLayout()
        self.btn_open = QPushButton("Show in monitor")
        self.btn_open.clicked.connect(lambda: self._emit(self.sig_open))
        self.btn_load = QPushButton("Load its settings")
        self.btn_load.clicked.connect(lambda: self._emit(self.sig_load_config))
        self.btn_resume = QPushButton("Resume")
        self.btn_resume.clicked.connect(lambda: self._emit(self.sig_resume))
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        for b in (self.btn_open, self.btn_load, self.btn_resume):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(refresh)
        lay.addLayout(row)
        self._selection_changed()

    def refresh(self) -> None:
        recent = self.settings.get("recent/runs") if self.settings else []
        self._task = start_thread(load_runs, recent, parent=self)
        self._task.sig_result.connect(self._on_rows)

    def _on_rows(self, rows: list[dict]) -> None:
        self.tree.clear()
        for r in rows:
            started = r.get("started")
            item = QTreeWidgetItem([
                r.get("name") or Path(r["run_dir"]).name, str(r.get("status") or "?"), str(r.get("method") or ""),
                str(r.get("model") or ""), str(r.get("steps") or ""), fmt_number(r.get("final_loss")),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""])
            item.setData(0, Qt.ItemDataRole.UserRole, r["run_dir"])
            item.setToolTip(0, r["run_dir"])
            self.tree.addTopLevelItem(item)
        for i in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(i)
        self.empty.setVisible(not rows)
        self._selection_changed()

    def selected_run(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def _selection_changed(self):
        on = self.selected_run() is not None
        for b in (self.btn_open, self.btn_load, self.btn_resume):
            b.setEnabled(on)

    def _emit(self, sig):
        run = self.selected_run()
        if run:
            sig.emit(run)
