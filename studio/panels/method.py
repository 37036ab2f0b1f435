"""Method panel: the method, its own fields, the target modules, and the live trainable count."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import RunConfig
from engine.methods.params import PARAMS
from studio.forms import ERROR_COLOR, DataclassForm
from studio.widgets import fmt_bytes, fmt_count, muted
from studio.workers import LatestJob

_SPECIAL_TARGETS = ("auto", "all-linear")


def method_title(name: str) -> tuple[str, str]:
    """(title, one-line description) from the params class docstring ("LoRA: a low-rank …")."""
    doc = (PARAMS[name].__doc__ or "").strip()
    if ":" in doc and "(" not in doc.split(":", 1)[0]:
        title, desc = doc.split(":", 1)
        desc = desc.strip()
        return title.strip(), desc[:1].upper() + desc[1:]
    return name, ""


class TargetModules(QWidget):
    """auto / all-linear / a checklist of the model's linear layer names."""

    sig_changed = Signal()

    def __init__(self, help_text: str, parent=None):
        super().__init__(parent)
        self.setToolTip(help_text)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        modes = QHBoxLayout()
        self.group = QButtonGroup(self)
        self.radios = {}
        for key, text in (("auto", "Auto (recommended)"), ("all-linear", "All linear"), ("list", "Choose:")):
            rb = QRadioButton(text)
            rb.setObjectName(f"targets:{key}")
            self.group.addButton(rb)
            self.radios[key] = rb
            modes.addWidget(rb)
            rb.toggled.connect(self._mode_toggled)
        modes.addStretch(1)
        lay.addLayout(modes)
        self.grid_box = QWidget()
        self.grid = QGridLayout(self.grid_box)
        self.grid.setContentsMargins(18, 0, 0, 0)
        lay.addWidget(self.grid_box)
        self.note = muted("")
        lay.addWidget(self.note)
        self.error = QLabel()
        self.error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error.setWordWrap(True)
        self.error.hide()
        lay.addWidget(self.error)
        self.checks: dict[str, QCheckBox] = {}
        self.available: list[str] = []
        self.defaults: list[str] = []
        self.radios["auto"].setChecked(True)
        self._rebuild([])

    def set_available(self, names: list[str], defaults: list[str]) -> None:
        self.available, self.defaults = list(names), list(defaults)
        chosen = self._checked() or list(defaults)
        self._rebuild(chosen)
        self._update_note()

    def _rebuild(self, chosen: list[str]):
        for cb in self.checks.values():
            cb.setParent(None)
            cb.deleteLater()
        self.checks.clear()
        names = list(dict.fromkeys([*self.available, *chosen]))
        cols = 3
        for i, n in enumerate(names):
            cb = QCheckBox(n)
            cb.setChecked(n in chosen)
            cb.toggled.connect(self.sig_changed)
            self.grid.addWidget(cb, i // cols, i % cols)
            self.checks[n] = cb
        self._mode_toggled()

    def _checked(self) -> list[str]:
        return [n for n, cb in self.checks.items() if cb.isChecked()]

    def _mode_toggled(self, *_):
        on = self.radios["list"].isChecked()
        self.grid_box.setEnabled(on)
        if on and not self._checked():
            for n in self.defaults:
                if n in self.checks:
                    self.checks[n].setChecked(True)
        self._update_note()
        self.sig_changed.emit()

    def _update_note(self):
        if not self.available:
            self.note.setText("Layer names appear when the model has been inspected.")
        elif self.radios["auto"].isChecked():
            self.note.setText("Auto picks: " + ", ".join(self.defaults))
        else:
            self.note.setText("")

    def value(self):
        for key in _SPECIAL_TARGETS:
            if self.radios[key].isChecked():
                return key
        return self._checked()

    def set_value(self, v) -> None:
        self.blockSignals(True)
        if isinstance(v, str) and v in _SPECIAL_TARGETS:
            self.radios[v].setChecked(True)
        else:
            names = [v] if isinstance(v, str) else list(v or [])
            self.radios["list"].setChecked(True)
            self._rebuild(names)
            for n, cb in self.checks.items():
                cb.setChecked(n in names)
        self.blockSignals(False)
        self._update_note()

    def set_error(self, msg: str | None) -> None:
        self.error.setText(msg or "")
        self.error.setVisible(bool(msg))


class MethodPanel(QWidget):
    sig_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        box = QGroupBox("Method")
        bl = QVBoxLayout(box)
        self.combo = QComboBox()
        self.combo.setObjectName("method.name")
        for name in PARAMS:
            title, desc = method_title(name)
            self.combo.addItem(f"{title}", name)
            self.combo.setItemData(self.combo.count() - 1, desc, role=3)  # Qt.ToolTipRole
        self.combo.currentIndexChanged.connect(self._method_changed)
        bl.addWidget(self.combo)
        self.description = muted("")
        bl.addWidget(self.description)
        lay.addWidget(box)

        self.params_box = QGroupBox("Parameters")
        self.params_layout = QVBoxLayout(self.params_box)
        lay.addWidget(self.params_box)

        self.targets_box = QGroupBox("Target modules")
        tl = QVBoxLayout(self.targets_box)
        self.targets = TargetModules("")
        self.targets.sig_changed.connect(self.sig_changed)
        tl.addWidget(self.targets)
        lay.addWidget(self.targets_box)

        count_box = QGroupBox("Size")
        cl = QVBoxLayout(count_box)
        self.count_label = QLabel("—")
        self.count_label.setObjectName("trainable-count")
        self.count_label.setWordWrap(True)
        cl.addWidget(self.count_label)
        lay.addWidget(count_box)
        lay.addStretch(1)

        self.form: DataclassForm | None = None
        self._per_method: dict[str, dict] = {}  # values kept when switching methods back and forth
        self._count_job = LatestJob("count", delay_ms=400, parent=self)
        self._count_job.sig_started.connect(lambda: self.count_label.setText(
            self.count_label.text().split(" (updating")[0] + " (updating…)"))
        self._count_job.sig_result.connect(self._on_count)
        self._count_job.sig_error.connect(self._on_count_error)
        self._count_key = None
        self.current = None
        self._build_form(self.combo.currentData())

    # -- method switching ---------------------------------------------------------------------
    def _build_form(self, name: str, values: dict | None = None):
        if self.form is not None:
            self._per_method[self.current] = self.values()[0]
            self.form.setParent(None)
            self.form.deleteLater()
        klass = PARAMS[name]
        self.current = name
        self.form = DataclassForm(klass, "method", exclude=("name", "target_modules"))
        self.form.sig_changed.connect(self.sig_changed)
        self.params_layout.addWidget(self.form)
        self.params_box.setVisible(bool(self.form.editors))
        names = {f.name: f for f in dataclasses.fields(klass)}
        has_targets = "target_modules" in names
        self._has_targets = has_targets
        self.targets_box.setVisible(has_targets)
        if has_targets:
            self.targets.setToolTip(names["target_modules"].metadata.get("help", ""))
        self.description.setText(method_title(name)[1])
        start = values if values is not None else self._per_method.get(name)
        defaults = klass()
        self.form.set_values(start or defaults)
        if has_targets:
            self.targets.set_value((start or {}).get("target_modules", defaults.target_modules))

    def _method_changed(self, _i):
        name = self.combo.currentData()
        if name != self.current:
            self._build_form(name)
            self.sig_changed.emit()

    # -- config ------------------------------------------------------------------------------
    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["name"] = self.current
        if self._has_targets:
            vals["target_modules"] = self.targets.value()
        return vals, errors

    def set_values(self, method_cfg) -> None:
        d = dataclasses.asdict(method_cfg)
        name = d["name"]
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(self.combo.findData(name))
        self.combo.blockSignals(False)
        self.form.setParent(None)
        self.form.deleteLater()
        self.form = None
        self._build_form(name, values=d)
        self.sig_changed.emit()

    def set_errors(self, errors: dict) -> None:
        self.form.set_errors(errors)
        self.targets.set_error(errors.get("method.target_modules"))

    def set_model_info(self, info: dict | None) -> None:
        if info:
            self.targets.set_available(info.get("linear_module_names") or [], info.get("default_targets") or [])

    # -- trainable count ---------------------------------------------------------------------
    def update_counts(self, cfg: RunConfig | None) -> None:
        if cfg is None:
            return
        d = cfg.to_dict()
        key = repr((d["model"], d["method"]))
        if key != self._count_key:
            self._count_key = key
            self._count_job.request(cfg)

    def _on_count(self, counts: dict):
        total, trainable = counts.get("total_params") or 0, counts.get("trainable_params") or 0
        pct = 100 * trainable / total if total else 0
        self.count_label.setText(
            f"<b>{fmt_count(trainable)}</b> trainable of {fmt_count(total)} parameters ({pct:.3g} %)"
            f"<br>Adapter file: about <b>{fmt_bytes(counts.get('adapter_bytes'))}</b>")

    def _on_count_error(self, exc):
        from studio.errors import plain_message

        self.count_label.setText(plain_message(exc))
