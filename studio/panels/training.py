"""Training panel: the optimisation settings, the output folder and the run buttons."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import PreferenceConfig, RunConfig, TrainConfig
from studio.forms import ERROR_COLOR, DataclassForm
from studio.panels.base import Area, PanelDefaults, Studio
from studio.where_to_run import WhereToRun


class TrainingPanel(QWidget, PanelDefaults):
    key, title, area = "training", "Training", Area.LEFT
    sig_changed = Signal()

    @classmethod
    def create(cls, studio: Studio) -> TrainingPanel:
        panel = cls(studio.runs.actions)
        studio.runs.sig_output_dir.connect(panel.output_dir.setText)
        # "Write cluster script" writes the whole current run configuration.
        panel.where.config_source = lambda: studio.config.validate_now()[0]
        return panel

    def __init__(self, actions=(), parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        out_box = QGroupBox("Output folder")
        ol = QVBoxLayout(out_box)
        row = QHBoxLayout()
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

        # train.preference: the options of train.task dpo/orpo/kto/simpo, each shown for the
        # tasks it serves; the whole group is hidden for SFT.
        self.pref_box = QGroupBox("Preference tuning")
        self.pref_box.setObjectName("group:train.preference")
        self.pref_form = DataclassForm(PreferenceConfig, "train.preference")
        self.pref_form.sig_changed.connect(self.sig_changed)
        QVBoxLayout(self.pref_box).addWidget(self.pref_form)
        lay.addWidget(self.pref_box)
        self.form.editors["task"].sig_changed.connect(self._task_changed)
        self._task_changed()

        # train.distributed: this machine's GPUs and processes, or a cluster script.
        self.where = WhereToRun()
        self.where.sig_changed.connect(self.sig_changed)
        lay.addWidget(self.where)

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

    def _task_changed(self) -> None:
        task = self.form.editors["task"].raw()
        self.pref_box.setVisible(task != "sft")
        self.pref_form.show_for_task(task)

    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_dir.text())
        if path:
            self.output_dir.setText(path)

    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["distributed"], where_errors = self.where.values()
        errors.update(where_errors)
        vals["preference"], pref_errors = self.pref_form.values()
        errors.update(pref_errors)
        return vals, errors

    def output(self) -> str:
        return self.output_dir.text().strip()

    def set_values(self, train_cfg: TrainConfig, output_dir: str) -> None:
        self.output_dir.blockSignals(True)
        self.output_dir.setText(output_dir)
        self.output_dir.blockSignals(False)
        self.form.set_values(train_cfg)
        self.where.set_values(train_cfg.distributed)
        self.pref_form.set_values(train_cfg.preference)
        self._task_changed()

    def set_errors(self, errors: dict) -> None:
        self.form.set_errors(errors)
        self.where.set_errors(errors)
        self.pref_form.set_errors(errors)
        if any(k.startswith("train.preference.") for k in errors):
            self.pref_box.setVisible(True)  # never hide the reason Start is disabled
        msg = errors.get("output_dir")
        self.output_error.setText(msg or "")
        self.output_error.setVisible(bool(msg))
