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

from engine.evals import describe_forgetting, short_forgetting
from engine.runs import RunIndex, summarize
from studio.panels.base import Area, PanelDefaults, Studio
from studio.tasks import start_thread
from studio.widgets import fmt_number, muted

COLUMNS = ["Run", "Status", "Method", "Model", "Steps", "Final loss", "Best", "Forgetting", "Started"]


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
    key, title, area = "runs", "Runs", Area.BOTTOM
    scrollable = False  # the list scrolls itself
    sig_open = Signal(str)         # show this run in the monitor
    sig_load_config = Signal(str)  # put this run's settings into the forms
    sig_resume = Signal(str)
    sig_overlay = Signal(list)     # draw these runs' curves over the monitor's run

    @classmethod
    def create(cls, studio: Studio) -> RunsPanel:
        panel = cls(studio.settings)
        panel.sig_open.connect(studio.runs.attach)
        panel.sig_load_config.connect(studio.files.load_run_config)
        panel.sig_resume.connect(studio.runs.resume_run_dir)
        panel.sig_overlay.connect(studio.bus.sig_overlay.emit)
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
        # Several rows: "Overlay in monitor" compares them (the other buttons act on the current one).
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
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
        self.btn_overlay = QPushButton("Overlay in monitor")
        self.btn_overlay.setObjectName("runs-overlay")
        self.btn_overlay.setToolTip("Draw the selected runs' loss curves over the run the monitor shows "
                                    "(select several with Ctrl or Shift)")
        self.btn_overlay.clicked.connect(lambda: self.sig_overlay.emit(self.selected_runs()))
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        for b in (self.btn_open, self.btn_load, self.btn_resume, self.btn_overlay):
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
                _best(r), short_forgetting(r.get("forgetting")),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""])
            item.setData(0, Qt.ItemDataRole.UserRole, r["run_dir"])
            item.setToolTip(0, r["run_dir"])
            if r.get("forgetting"):
                item.setToolTip(COLUMNS.index("Forgetting"), describe_forgetting(r["forgetting"]))
            self.tree.addTopLevelItem(item)
        for i in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(i)
        self.empty.setVisible(not rows)
        self._selection_changed()

    def selected_run(self) -> str | None:
        """The current run of the selection (the one the single-run buttons act on)."""
        current = self.tree.currentItem()
        items = self.tree.selectedItems()
        if current is not None and current in items:
            return current.data(0, Qt.ItemDataRole.UserRole)
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def selected_runs(self) -> list[str]:
        """Every selected run folder, in the list's order."""
        items = sorted(self.tree.selectedItems(), key=self.tree.indexOfTopLevelItem)
        return [i.data(0, Qt.ItemDataRole.UserRole) for i in items]

    def _selection_changed(self):
        on = self.selected_run() is not None
        for b in (self.btn_open, self.btn_load, self.btn_resume, self.btn_overlay):
            b.setEnabled(on)

    def _emit(self, sig):
        run = self.selected_run()
        if run:
            sig.emit(run)


def _best(r: dict) -> str:
    """The best evaluation the run kept ("eval_loss 1.23 @ 20"), or ''."""
    if r.get("best_value") is None:
        return ""
    return f"{str(r.get('best_metric') or '').removeprefix('eval_')} {fmt_number(r['best_value'])} @ {r.get('best_step')}"
