"""Choosing what to try or export: a run (any run the Runs tab lists) and, in it, an adapter —
``final``, any ``checkpoint-N`` — or the base model, or another run's adapter trained on the same
base with the same method (the Playground puts it beside this run's own).

``RunPicker`` is the run list as a combo box (rows from studio/run_table.py, read in a worker
thread); ``source_labels`` lists what a run offers. Panels follow the run the Monitor shows until
the user picks another.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QWidget

from studio.run_table import load_runs
from studio.tasks import start_thread

BASE = "base"  # engine.playground.BASE (the side with no adapter)


def other_run_label(row: dict, source: str = "final") -> str:
    """How another run's adapter is named among the sources: ``<run name>: final``."""
    return f"{row.get('name') or Path(row['run_dir']).name}: {source}"


def same_base(a: dict, b: dict) -> bool:
    """Two runs' adapters fit one base model: the same base and the same method (one kind of adapter)."""
    ca, cb = a.get("config") or {}, b.get("config") or {}
    model = lambda c: (c.get("model") or {}).get("name_or_path")  # noqa: E731
    method = lambda c: (c.get("method") or {}).get("name")  # noqa: E731
    return bool(model(ca)) and model(ca) == model(cb) and method(ca) == method(cb)


def has_adapter(run_dir: str | Path) -> bool:
    """The run saved a final adapter (or model) folder."""
    d = Path(run_dir) / "adapter"
    return d.is_dir() and any(d.iterdir())


def follow_runs(panel, studio) -> None:
    """Wire a panel with a run picker (Playground, Export) to the window's runs: a finished run's
    outputs become choices, and until the user picks a run the panel follows the one the Monitor
    shows (``panel.follow``, ``panel.follow_shown``)."""
    panel.picker.settings = studio.settings
    studio.runs.sig_finished.connect(lambda ev: panel.follow(ev.get("run_dir")
                                                             or str(studio.runs.supervisor.run_dir or "")))
    studio.runs.sig_run_dir.connect(panel.follow_shown)
    panel.picker.refresh()


class RunPicker(QWidget):
    """A run chooser: every listed run (newest first) by name, with its method and status."""

    sig_run = Signal(str)   # the user (or follow()) chose this run folder

    def __init__(self, label: str = "Run:", parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel(label))
        self.combo = QComboBox()
        self.combo.setObjectName("run-picker")
        self.combo.setMinimumContentsLength(24)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.activated.connect(lambda _i: self._chosen())
        lay.addWidget(self.combo, 1)
        refresh = QToolButton()
        refresh.setText("↻")
        refresh.setToolTip("Refresh the list of runs")
        refresh.clicked.connect(self.refresh)
        lay.addWidget(refresh)
        self.rows: list[dict] = []
        self.settings = None
        self._want: str | None = None
        self._task = None

    def refresh(self) -> None:
        recent = self.settings.get("recent/runs") if self.settings is not None else []
        self._task = start_thread(load_runs, recent, parent=self)
        self._task.sig_result.connect(self._on_rows)

    def _on_rows(self, rows: list[dict]) -> None:
        self.rows = rows
        current = self._want or self.current()
        self.combo.blockSignals(True)
        self.combo.clear()
        for r in rows:
            self.combo.addItem(f"{r.get('name')}  ·  {r.get('method') or '?'}  ·  {r.get('status')}", r["run_dir"])
        found = self._select(current)
        self.combo.blockSignals(False)
        if found and self._want:
            self._want = None
            self._chosen()

    def _select(self, run_dir: str | None) -> bool:
        if not run_dir:
            return False
        key = str(Path(run_dir).resolve())
        for i in range(self.combo.count()):
            if str(Path(self.combo.itemData(i)).resolve()) == key:
                self.combo.setCurrentIndex(i)
                return True
        return False

    def current(self) -> str | None:
        return self.combo.currentData()

    def row(self, run_dir: str | None = None) -> dict | None:
        run_dir = run_dir or self.current()
        if not run_dir:
            return None
        key = str(Path(run_dir).resolve())
        return next((r for r in self.rows if str(Path(r["run_dir"]).resolve()) == key), None)

    def follow(self, run_dir: str) -> None:
        """Show ``run_dir`` (a run that just finished or is shown in the monitor) at once when the
        list has it, and refresh the list (its status and adapters may have changed)."""
        if self._select(run_dir):
            self._chosen()
        self._want = str(run_dir)
        self.refresh()

    def _chosen(self) -> None:
        if self.current():
            self.sig_run.emit(self.current())

    def others_on_same_base(self, run_dir: str | None = None) -> list[dict]:
        """Other runs whose final adapter fits the same base as ``run_dir``'s (same model, same method)."""
        me = self.row(run_dir)
        if me is None:
            return []
        key = str(Path(me["run_dir"]).resolve())
        return [r for r in self.rows if str(Path(r["run_dir"]).resolve()) != key and same_base(me, r)
                and has_adapter(r["run_dir"])]
