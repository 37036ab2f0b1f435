"""Training panel: the optimisation settings, the output folder and the run buttons."""

from __future__ import annotations

import dataclasses

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

from engine.config import EvalConfig, RunConfig, TrainConfig
from engine.fields import is_section
from studio.forms import ERROR_COLOR, DataclassForm, field_label
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
        box_lay = QVBoxLayout(box)
        box_lay.addWidget(self.form)
        # train's nested sections (early_stopping, divergence, …) each get a form of their own,
        # generated like every other; train.distributed has its own widget (Where to run).
        self.sections: dict[str, DataclassForm] = {}
        for f in dataclasses.fields(TrainConfig):
            if is_section(f) and f.name != "distributed":
                sub = QGroupBox(field_label(f.name))
                sub.setToolTip(f.metadata.get("help", ""))
                form = DataclassForm(type(f.default_factory()), f"train.{f.name}")
                form.sig_changed.connect(self.sig_changed)
                QVBoxLayout(sub).addWidget(form)
                box_lay.addWidget(sub)
                self.sections[f.name] = form
        lay.addWidget(box)

        # The run file's eval section: samples, the task metric and the forgetting check.
        eval_box = QGroupBox("Evaluation")
        eval_box.setToolTip((EvalConfig.__doc__ or "").strip())
        self.eval_form = DataclassForm(EvalConfig, "eval")
        self.eval_form.sig_changed.connect(self.sig_changed)
        QVBoxLayout(eval_box).addWidget(self.eval_form)
        lay.addWidget(eval_box)

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

    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_dir.text())
        if path:
            self.output_dir.setText(path)

    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["distributed"], where_errors = self.where.values()
        errors.update(where_errors)
        for name, form in self.sections.items():
            vals[name], errs = form.values()
            errors.update(errs)
        return vals, errors

    def eval_values(self) -> tuple[dict, dict]:
        """The run file's eval section (values, {path: message})."""
        return self.eval_form.values()

    def set_eval_values(self, eval_cfg: EvalConfig) -> None:
        self.eval_form.set_values(eval_cfg)

    def output(self) -> str:
        return self.output_dir.text().strip()

    def set_values(self, train_cfg: TrainConfig, output_dir: str) -> None:
        self.output_dir.blockSignals(True)
        self.output_dir.setText(output_dir)
        self.output_dir.blockSignals(False)
        self.form.set_values(train_cfg)
        for name, form in self.sections.items():
            form.set_values(getattr(train_cfg, name))
        self.where.set_values(train_cfg.distributed)

    def set_errors(self, errors: dict) -> None:
        self.form.set_errors(errors)
        for form in (*self.sections.values(), self.eval_form):
            form.set_errors(errors)
        self.where.set_errors(errors)
        msg = errors.get("output_dir")
        self.output_error.setText(msg or "")
        self.output_error.setVisible(bool(msg))
