"""Method panel: the method, its own fields, the target modules, and the live trainable count."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
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
from engine.methods import PARAMS, get_method
from studio.forms import ERROR_COLOR, DataclassForm
from studio.messages import window_message
from studio.panels.base import Area, PanelDefaults, Studio
from studio.tasks import LatestJob
from studio.widgets import compact, fmt_bytes, fmt_count, muted
from studio.wording import window_text

_SPECIAL_TARGETS = ("auto", "all-linear")


def method_title(name: str) -> tuple[str, str]:
    """(title, one-line description) from the params class docstring ("LoRA: a low-rank …")."""
    # A docstring wrapped over several lines reads as one paragraph in the label.
    doc = " ".join((PARAMS[name].__doc__ or "").split())
    if ":" in doc and "(" not in doc.split(":", 1)[0]:
        title, desc = doc.split(":", 1)
        desc = desc.strip()
        return title.strip(), desc[:1].upper() + desc[1:]
    return name, ""


# The method list's groups, in order. A method's group comes from what it declares (engine
# MethodSpec), never from its name: the default method's family is the recommended one.
GROUPS = [("recommended", "Recommended"), ("prompt", "Prompt-based (virtual tokens)"),
          ("adapters", "Adapters"), ("selective", "Selective (the model's own weights)"),
          ("peft", "More methods from peft")]
_GENERATED_FAMILY = "peft"  # the family of the tuners generated from peft's own configs


def method_group(spec) -> str:
    """The group a method is listed under (a key of GROUPS)."""
    from engine.config import RunConfig

    if spec.family == get_method(RunConfig().method.name).family:
        return "recommended"
    if spec.prompt_based:
        return "prompt"
    if spec.saved_as == "tensors" or spec.saves_full_model:
        return "selective"
    if spec.family == _GENERATED_FAMILY:
        return "peft"
    return "adapters"


def caveat_html(spec, unavailable: str | None = None) -> str:
    """The method's caveat and whether it merges, one short paragraph (empty when neither)."""
    parts = []
    if unavailable:
        return f"<span style='color: {ERROR_COLOR};'>⚠ Not for this model: {window_text(unavailable)}.</span>"
    if spec.note:
        parts.append(f"<span style='color: {ERROR_COLOR};'>⚠ {spec.note[:1].upper() + spec.note[1:]}.</span>")
    if spec.saves_full_model:
        parts.append("Saves a complete model (no adapter).")
    elif not spec.can_merge:
        parts.append(f"Cannot be merged into the base: {spec.merge_note or 'it is not a weight change'}.")
    if spec.needs_quantization:
        # bitsandbytes trains 4-bit bases on the CPU too (DESIGN §4, measured): it is slower there, not refused.
        parts.append(f"Loads the base in 4-bit ({spec.needs_quantization}) with bitsandbytes: about a quarter "
                     "of the weight memory. Best on a CUDA GPU; on the CPU it trains too, more slowly.")
    return " ".join(parts)


class TargetModules(QWidget):
    """auto / all-linear / a checklist of the model's module names of the method's kind: linear
    layers for the LoRA family, normalisation layers for LN tuning, the embedding for trainable
    tokens; ShadowPEFT wraps whole decoder blocks, so it only has auto."""

    sig_changed = Signal()

    def __init__(self, help_text: str, parent=None):
        super().__init__(parent)
        self.setToolTip(help_text)
        self.setObjectName("field:method.target_modules")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        modes = QHBoxLayout()
        self.group = QButtonGroup(self)
        self.radios = {}
        for key, text in (("auto", "Auto"), ("all-linear", "All linear"), ("list", "Choose:")):
            rb = QRadioButton(text)
            rb.setObjectName(f"targets:{key}")
            rb.setToolTip({"auto": "Recommended: the modules the engine picks for this method and model "
                                   "(listed below)",
                           "all-linear": "Every linear layer except the output head",
                           "list": "Only the modules ticked below"}[key])
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
        self.kind = "linear"
        self.candidates: dict[str, dict] = {}
        self.method_auto: list[str] | None = None  # what the engine says `auto` adapts for this method
        self.radios["auto"].setChecked(True)
        self._rebuild([])

    def set_candidates(self, candidates: dict[str, dict]) -> None:
        """What an inspection found, per kind: {"linear": {"names": [...], "auto": [...]}, ...}."""
        self.candidates = dict(candidates)
        self._apply_kind()

    def set_kind(self, kind: str) -> None:
        if kind != self.kind:
            self.kind = kind
            self._rebuild([])
        self._apply_kind()

    def _apply_kind(self) -> None:
        self.radios["all-linear"].setVisible(self.kind == "linear")
        self.radios["list"].setVisible(self.kind != "blocks")
        checked = self.group.checkedButton()
        if checked is None or checked.isHidden():  # e.g. all-linear left over from LoRA
            self.radios["auto"].setChecked(True)
        c = self.candidates.get(self.kind) or {}
        auto = self.method_auto if self.method_auto is not None else (c.get("auto") or [])
        self.set_available(c.get("names") or [], auto)

    def set_method_auto(self, names: list[str] | None) -> None:
        """What the engine resolves ``auto`` to for the chosen method (inspect_model's auto_targets)."""
        self.method_auto = None if names is None else list(names)
        self._apply_kind()

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
        if self.kind == "blocks":
            self.note.setText("Auto wraps every decoder layer (peft's default for this method).")
        elif not self.available:
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
            self.radios["list"].setVisible(True)  # a run file's own list is kept, whatever the kind
            self.radios["list"].setChecked(True)
            self._rebuild(names)
            for n, cb in self.checks.items():
                cb.setChecked(n in names)
        self.blockSignals(False)
        self._update_note()

    def set_error(self, msg: str | None) -> None:
        self.error.setText(msg or "")
        self.error.setVisible(bool(msg))


class MethodPanel(QWidget, PanelDefaults):
    key, title, area = "method", "Method", Area.LEFT
    sig_changed = Signal()

    @classmethod
    def create(cls, studio: Studio) -> MethodPanel:
        panel = cls(settings=studio.settings)
        studio.config.sig_config.connect(panel.update_counts)
        studio.bus.sig_model_info.connect(panel.set_model_info)
        studio.bus.sig_device.connect(panel.set_device)
        return panel

    def __init__(self, parent=None, settings=None):
        super().__init__(parent)
        self.settings = settings
        self._cfg: RunConfig | None = None
        lay = QVBoxLayout(self)
        box = QGroupBox("Method")
        bl = QVBoxLayout(box)
        self.combo = compact(QComboBox(), 12)
        self.combo.setObjectName("field:method.name")
        self.combo.setMaxVisibleItems(24)
        self._fill_methods()
        self.combo.currentIndexChanged.connect(self._method_changed)
        bl.addWidget(self.combo)
        self.description = muted("")
        bl.addWidget(self.description)
        # What the user must know before choosing: a missing package, whether it merges.
        self.caveat = QLabel()
        self.caveat.setObjectName("method-caveat")
        self.caveat.setWordWrap(True)
        bl.addWidget(self.caveat)
        lay.addWidget(box)

        self.params_box = QGroupBox("Parameters")
        self.params_layout = QVBoxLayout(self.params_box)
        # Shown while "Start from adapter" names one: the run trains that adapter's own settings.
        self.adapter_note = muted("Training continues this adapter with its own settings (rank, targets, …), "
                                  "read from it when the run starts; the run's run.yaml records them.")
        self.adapter_note.setObjectName("from-adapter-note")
        self.adapter_note.hide()
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
        self._unavailable: dict[str, str] = {}  # method → why this model cannot take it
        self._auto_targets: dict[str, list[str]] = {}  # method → what `auto` adapts on this model
        self._per_method: dict[str, dict] = {}  # values kept when switching methods back and forth
        self._count_job = LatestJob("count", delay_ms=400, parent=self)
        self._count_job.sig_started.connect(lambda: self.count_label.setText(
            self.count_label.text().split(" (updating")[0] + " (updating…)"))
        self._count_job.sig_result.connect(self._on_count)
        self._count_job.sig_error.connect(self._on_count_error)
        self._count_key = None
        self.current = None
        self._build_form(self.combo.currentData())

    def _fill_methods(self) -> None:
        """Every registered method under its group's heading (headings cannot be chosen)."""
        by_group: dict[str, list[str]] = {key: [] for key, _ in GROUPS}
        for name in PARAMS:
            by_group[method_group(get_method(name))].append(name)
        model = self.combo.model()
        for key, heading in GROUPS:
            if not by_group[key]:
                continue
            self.combo.addItem(f"— {heading} —", None)
            item = model.item(self.combo.count() - 1)
            item.setFlags(item.flags() & ~(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled))
            font = item.font()
            font.setBold(True)
            item.setFont(font)
            for name in by_group[key]:
                title, desc = method_title(name)
                self.combo.addItem(title, name)
                self.combo.setItemData(self.combo.count() - 1, desc, role=Qt.ItemDataRole.ToolTipRole)
        self.combo.setCurrentIndex(self.combo.findData(RunConfig().method.name))

    def method_names(self) -> list[str]:
        """The methods in list order (headings left out)."""
        return [self.combo.itemData(i) for i in range(self.combo.count()) if self.combo.itemData(i) is not None]

    # -- method switching ---------------------------------------------------------------------
    def _build_form(self, name: str, values: dict | None = None):
        carried = None  # the adapter a run continues is not a method setting: it stays on a switch
        if self.form is not None:
            self._per_method[self.current] = self.values()[0]
            carried = self._per_method[self.current].get("from_adapter")
            self.form.setParent(None)
            self.form.deleteLater()
        klass = PARAMS[name]
        self.current = name
        self.form = DataclassForm(klass, "method", exclude=("name", "target_modules"))
        self.form.sig_changed.connect(self.sig_changed)
        self.form.sig_changed.connect(self._update_adapter_note)
        self.params_layout.addWidget(self.form)
        self.params_layout.addWidget(self.adapter_note)
        self.params_box.setVisible(bool(self.form.editors))
        names = {f.name: f for f in dataclasses.fields(klass)}
        has_targets = "target_modules" in names
        self._has_targets = has_targets
        self.targets_box.setVisible(has_targets)
        spec = get_method(name)
        if has_targets:
            self.targets.setToolTip(names["target_modules"].metadata.get("help", ""))
            self.targets.method_auto = self._auto_targets.get(name)
            self.targets.set_kind(spec.target_kind)
        self.description.setText(method_title(name)[1])
        self.caveat.setText(caveat_html(spec, self._unavailable.get(name)))
        start = values if values is not None else self._per_method.get(name)
        defaults = klass()
        if values is None and carried:
            start = {**(start or dataclasses.asdict(defaults)), "from_adapter": carried}
        self.form.set_values(start or defaults)
        if has_targets:
            self.targets.set_value((start or {}).get("target_modules", defaults.target_modules))
        self._update_adapter_note()

    def _update_adapter_note(self) -> None:
        ed = self.form.editors.get("from_adapter") if self.form is not None else None
        self.adapter_note.setVisible(bool(ed is not None and str(ed.raw() or "").strip()))

    def _method_changed(self, _i):
        name = self.combo.currentData()
        if name is None:  # a heading: keep the method
            self.combo.setCurrentIndex(self.combo.findData(self.current))
            return
        if name != self.current:
            self._build_form(name)
            self.sig_changed.emit()

    # -- config ------------------------------------------------------------------------------
    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["name"] = self.current
        if self._has_targets:
            vals["target_modules"] = self.targets.value()
        why = self._unavailable.get(self.current)
        if why:  # the model cannot take this method: Start would only make a failed run
            errors["method.name"] = f"{method_title(self.current)[0]} is not for this model: {window_text(why)}"
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

    def set_warnings(self, warnings: dict) -> None:
        self.form.set_warnings(warnings)

    def set_model_info(self, info: dict | None) -> None:
        if info:
            linear = {"names": info.get("linear_module_names") or [], "auto": info.get("default_targets") or []}
            self._auto_targets = dict(info.get("auto_targets") or {})
            self.targets.method_auto = self._auto_targets.get(self.current)
            self.targets.set_candidates(info.get("target_candidates") or {"linear": linear})
            self._mark_unavailable(info.get("unavailable_methods") or {})

    def _mark_unavailable(self, problems: dict[str, str]) -> None:
        """Mark (not hide: a run file may still name them) the methods this model cannot take."""
        changed = dict(problems) != self._unavailable
        self._unavailable = dict(problems)
        for i in range(self.combo.count()):
            name = self.combo.itemData(i)
            if name is None:
                continue
            title, desc = method_title(name)
            why = problems.get(name)
            self.combo.setItemText(i, f"{title}  (not for this model)" if why else title)
            self.combo.setItemData(i, f"Not available: {window_text(why)}" if why else desc,
                                   role=Qt.ItemDataRole.ToolTipRole)
        self.caveat.setText(caveat_html(get_method(self.current), self._unavailable.get(self.current)))
        if changed:
            self.sig_changed.emit()  # Start's gate follows

    # -- trainable count ---------------------------------------------------------------------
    def update_counts(self, cfg: RunConfig | None = None) -> None:
        cfg = cfg if cfg is not None else self._cfg
        if cfg is None:
            return
        self._cfg = cfg
        d = cfg.to_dict()
        # the saved size depends on the dtype the run trains in, so on the device the estimate judges
        gpu = (self.settings.get("estimate/gpu") if self.settings is not None else "") or None
        key = repr((d["model"], d["method"], gpu))
        if key != self._count_key:
            self._count_key = key
            self._count_job.request(d, gpu)

    def set_device(self, _gpu) -> None:
        """The estimate's device changed: the saved size follows (same figure in both panels)."""
        self.update_counts()

    def _on_count(self, counts: dict):
        total, trainable = counts.get("total_params") or 0, counts.get("trainable_params") or 0
        pct = 100 * trainable / total if total else 0
        saved = "Saved model" if get_method(self.current).saves_full_model else "Adapter file"
        self.count_label.setText(
            f"<b>{fmt_count(trainable)}</b> trainable of {fmt_count(total)} parameters ({pct:.3g} %)"
            f"<br>{saved}: about <b>{fmt_bytes(counts.get('adapter_bytes'))}</b>")

    def _on_count_error(self, exc):
        self.count_label.setText(window_message(exc))
