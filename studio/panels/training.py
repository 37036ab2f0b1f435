"""Training panel: the optimisation settings, where runs go (with readable automatic names), what
Start will train, and the run buttons."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import RunConfig, TrainConfig
from studio.forms import ERROR_COLOR, DataclassForm
from studio.panels.base import Area, PanelDefaults, Studio
from studio.summary import is_auto_name, run_name, what_will_train
from studio.where_to_run import WhereToRun
from studio.widgets import muted

# Output folder names that are placeholders (the demo recipe's): a config with one gets automatic
# names. Any other name is the user's and is kept (``runs/my-run`` included).
_DEFAULT_NAMES = {"demo", ""}


class TrainingPanel(QWidget, PanelDefaults):
    key, title, area = "training", "Training", Area.LEFT
    sig_changed = Signal()

    @classmethod
    def create(cls, studio: Studio) -> TrainingPanel:
        panel = cls(studio.runs.actions, settings=studio.settings)
        studio.runs.sig_output_dir.connect(panel.show_output_dir)
        studio.config.sig_config.connect(panel.show_plan)
        studio.config.sig_errors.connect(lambda errors: errors and panel.show_plan(None))
        # "Write cluster script" writes the whole current run configuration.
        panel.where.config_source = lambda: studio.config.validate_now()[0]
        return panel

    def __init__(self, actions=(), parent=None, settings=None):
        super().__init__(parent)
        self.settings = settings
        self._sections: dict = {}
        lay = QVBoxLayout(self)
        out_box = QGroupBox("Output folder")
        ol = QVBoxLayout(out_box)
        self.auto_name = QCheckBox("Automatic run names")
        self.auto_name.setObjectName("field:auto_run_name")
        self.auto_name.setToolTip("On: the folder below holds the runs, and each run gets its own folder "
                                  "named like smollm2-lora-alpaca-1129-2215. Off: the folder below is the run's.")
        self.auto_name.setChecked(settings.get("ui/auto_run_name") if settings is not None else True)
        self.auto_name.toggled.connect(self._auto_toggled)
        ol.addWidget(self.auto_name)
        row = QHBoxLayout()
        self.folder_label = QLabel()
        row.addWidget(self.folder_label)
        self.output_dir = QLineEdit()
        self.output_dir.setObjectName("field:output_dir")
        self.output_dir.setToolTip(RunConfig.__dataclass_fields__["output_dir"].metadata["help"])
        self.output_dir.textChanged.connect(self.sig_changed)
        row.addWidget(self.output_dir, 1)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose the folder")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        ol.addLayout(row)
        self.next_run = muted("")
        self.next_run.setObjectName("next-run")
        ol.addWidget(self.next_run)
        self.output_error = QLabel()
        self.output_error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.output_error.setWordWrap(True)
        self.output_error.hide()
        ol.addWidget(self.output_error)
        lay.addWidget(out_box)

        box = QGroupBox("Training")
        self.form = DataclassForm(TrainConfig, "train")
        self.form.sig_changed.connect(self.sig_changed)
        QVBoxLayout(box).addWidget(self.form)
        lay.addWidget(box)

        # train.distributed: this machine's GPUs and processes, or a cluster script.
        self.where = WhereToRun()
        self.where.sig_changed.connect(self.sig_changed)
        lay.addWidget(self.where)

        # What Start will train, in words: the model, the method, the data file (said to be the
        # demo's when it is) and the length, so nobody trains on the wrong data without seeing it.
        self.plan = QLabel("")
        self.plan.setObjectName("start-plan")
        self.plan.setWordWrap(True)
        lay.addWidget(self.plan)
        if actions:
            buttons = QHBoxLayout()
            for act in actions:
                b = QToolButton()
                b.setDefaultAction(act)
                b.setToolButtonStyle(b.toolButtonStyle().ToolButtonTextBesideIcon)
                buttons.addWidget(b)
            buttons.addStretch(1)
            lay.addLayout(buttons)
        lay.addStretch(1)
        self._auto_toggled(self.auto_name.isChecked(), save=False)

    # -- the output folder ---------------------------------------------------------------------
    def _auto_toggled(self, on: bool, save: bool = True) -> None:
        self.folder_label.setText("Runs in:" if on else "Folder:")
        self.output_dir.setPlaceholderText("runs" if on else "runs/my-run")
        if save and self.settings is not None:
            self.settings.set("ui/auto_run_name", on)
        self.next_run.setVisible(on)
        self.sig_changed.emit()

    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_dir.text())
        if path:
            self.output_dir.setText(path)

    def show_output_dir(self, path: str) -> None:
        """The run controller put a run in ``path`` (another name than asked, the folder being
        taken): with automatic names the next run is named afresh anyway; else show the folder."""
        if not self.auto_name.isChecked():
            self.output_dir.setText(path)

    def output(self, sections: dict | None = None) -> str:
        """The run folder: the typed one, or with automatic names ``<runs folder>/<name>`` where the
        name comes from ``sections`` (the form's model/data/method values, as ConfigModel collects)."""
        text = self.output_dir.text().strip()
        if not self.auto_name.isChecked():
            return text
        s = sections if sections is not None else self._sections
        self._sections = s
        name = run_name((s.get("model") or {}).get("name_or_path", ""), (s.get("method") or {}).get("name", ""),
                        (s.get("data") or {}).get("path", ""))
        return str(Path(text or "runs") / name)

    # -- config ------------------------------------------------------------------------------
    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["distributed"], where_errors = self.where.values()
        errors.update(where_errors)
        return vals, errors

    def set_values(self, train_cfg: TrainConfig, output_dir: str) -> None:
        out = Path(output_dir) if output_dir else Path("runs")
        self.output_dir.blockSignals(True)
        if is_auto_name(out.name) or out.name in _DEFAULT_NAMES:
            self.auto_name.blockSignals(True)
            self.auto_name.setChecked(True)
            self.auto_name.blockSignals(False)
            self._auto_toggled(True, save=False)
            self.output_dir.setText(str(out.parent) if out.name else "runs")
        else:  # a folder the user named: kept as it is
            self.auto_name.blockSignals(True)
            self.auto_name.setChecked(False)
            self.auto_name.blockSignals(False)
            self._auto_toggled(False, save=False)
            self.output_dir.setText(output_dir)
        self.output_dir.blockSignals(False)
        self.form.set_values(train_cfg)
        self.where.set_values(train_cfg.distributed)

    def set_errors(self, errors: dict) -> None:
        self.form.set_errors(errors)
        self.where.set_errors(errors)
        msg = errors.get("output_dir")
        self.output_error.setText(msg or "")
        self.output_error.setVisible(bool(msg))

    def set_warnings(self, warnings: dict) -> None:
        self.form.set_warnings(warnings)

    def show_plan(self, cfg: RunConfig | None) -> None:
        self.plan.setText(what_will_train(cfg))
        if cfg is not None:
            self.next_run.setText(f"Next run: {cfg.output_dir}")
