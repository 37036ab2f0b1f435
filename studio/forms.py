"""Forms generated from config dataclasses: one editor per field, help as tooltip, inline errors.

Nothing here knows a field by name: the editor follows the field's type and metadata
(``choices``, ``min``/``max``, ``advanced``, ``help``), so a field added to the engine's config
appears in the studio without touching this file. Panels may replace an editor with a richer
widget (``exclude`` the field and handle it themselves).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing

import yaml
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import ConfigError, coerce_value
from engine.fields import is_section
from studio.widgets import compact

# Readable in both light and dark palettes; the one colour we do fix, because "error" must look
# like an error whatever the theme.
ERROR_COLOR = "#d64545"
WARNING_COLOR = "#c27c0e"
_INT_LIMIT = 2_000_000_000

# Labels only: a few abbreviations read badly when merely capitalised. Unknown fields still get a
# label from their name, so this table never has to be complete.
_LABELS = {
    "lr": "Learning rate",
    "r": "Rank (r)",
    "grad_accum": "Gradient accumulation",
    "name_or_path": "Model",
    "dtype": "Weights dtype",
    "max_grad_norm": "Max grad norm",
    "loraplus_lr_ratio": "LoRA+ lr ratio",
    "use_rslora": "Use rsLoRA",
    "attn_implementation": "Attention",
    "eval_steps": "Eval every (steps)",
    "save_steps": "Save every (steps)",
    "logging_steps": "Log every (steps)",
    "output_dir": "Output folder",
    "from_adapter": "Start from adapter",
}


def field_label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " ").capitalize())


@functools.cache
def _hints(klass) -> dict:
    # get_type_hints re-evaluates every string annotation on each call (these modules use
    # ``from __future__ import annotations``): ~1 ms a field, paid on every keystroke otherwise.
    return typing.get_type_hints(klass)


def _cache_engine_type_hints() -> None:
    """engine.config.coerce_value resolves type hints per call; RunConfig.errors() calls it for
    every field, so one validation cost ~150 ms. Cache it (the classes never change at run time)."""
    import engine.config as ec

    fn = getattr(ec, "_resolved_types", None)
    if fn is not None and not hasattr(fn, "cache_info"):
        ec._resolved_types = functools.lru_cache(maxsize=None)(fn)


_cache_engine_type_hints()


def type_info(klass, name: str) -> tuple[set[type], bool]:
    """Base types a field accepts and whether it may be None."""
    tp = _hints(klass)[name]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        base = {typing.get_origin(a) or a for a in args if a is not type(None)}
        return base, type(None) in args
    return {origin or tp}, False


def format_float(v: float) -> str:
    # repr round-trips exactly (2e-4 stays 0.0002, 1e-05 stays 1e-05), unlike "%g".
    return repr(float(v))


class BoundedSpinBox(QSpinBox):
    """A spin box that accepts any whole number typed into it: a value outside the field's bounds
    stays as typed and validation marks it (−4 in "Batch size" is shown as wrong, never quietly
    made 4; 99999 is never made 999). Only the arrows, keys and wheel stop at the bounds."""

    def __init__(self, low=None, high=None, parent=None):
        super().__init__(parent)
        self.setRange(-_INT_LIMIT, _INT_LIMIT)
        self.low, self.high = low, high

    def stepBy(self, steps: int) -> None:
        v = self.value() + steps * self.singleStep()
        if self.low is not None:
            v = max(v, int(self.low))
        if self.high is not None:
            v = min(v, int(self.high))
        self.setValue(v)

    def stepEnabled(self):
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        v = self.value()
        if self.high is None or v < self.high:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self.low is None or v > self.low:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags


class FieldEditor(QWidget):
    """One field's editor. ``raw()`` returns the value to coerce; ``set_value`` shows a value."""

    sig_changed = Signal()

    def __init__(self, klass, f: dataclasses.Field, path: str, parent=None):
        super().__init__(parent)
        self.klass, self.field, self.path = klass, f, path
        self.name = f.name
        self.types, self.nullable = type_info(klass, f.name)
        md = f.metadata
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.widget = self._build(md)
        self.widget.setToolTip(md.get("help", ""))
        self.widget.setObjectName(f"field:{path}")
        lay.addWidget(self.widget, 1)
        if self.kind == "path":
            browse = QToolButton(self)
            browse.setText("…")
            browse.setToolTip("Choose a folder" if md.get("path") == "folder" else "Choose a file")
            browse.clicked.connect(self._browse)
            lay.addWidget(browse)

    # -- construction ------------------------------------------------------------------------
    def _build(self, md) -> QWidget:
        t, nullable = self.types, self.nullable
        if "choices" in md:
            return self._combo("choice", [("none" if c is None else str(c), c) for c in md["choices"]])
        if t == {bool}:
            if nullable:  # three states: a checkbox cannot say "leave it to the library"
                return self._combo("choice", [("default", None), ("true", True), ("false", False)])
            self.kind = "bool"
            w = QCheckBox(self)
            w.toggled.connect(self.sig_changed)
            return w
        if t == {int} and not nullable:
            self.kind = "int"
            w = BoundedSpinBox(md.get("min"), md.get("max"), self)
            w.setAccelerated(True)
            # textChanged, not valueChanged: emptying the box changes no value, and must still be
            # checked (raw() refuses an empty box instead of using the last number)
            w.textChanged.connect(self.sig_changed)
            return w
        w = QLineEdit(self)
        w.textChanged.connect(self.sig_changed)
        if t == {int}:
            self.kind = "number"
        elif t == {float}:
            self.kind = "number"
        elif list in t and str in t:
            self.kind = "list_or_str"
            w.setPlaceholderText("a word, or names separated by commas")
        elif list in t:
            self.kind = "list"
            w.setPlaceholderText("names separated by commas")
        elif dict in t:
            self.kind = "dict"
            w.setPlaceholderText("{key: value, …}")
        elif self.name == "path" or self.name.endswith("_path") or md.get("path"):
            self.kind = "path"
        else:
            self.kind = "text"
        if nullable and not w.placeholderText():
            w.setPlaceholderText("default")
        elif nullable:
            w.setPlaceholderText(w.placeholderText() + " (empty: default)")
        return w

    def _combo(self, kind, items) -> QComboBox:
        self.kind = kind
        w = compact(QComboBox(self), 8)
        for label, value in items:
            w.addItem(label, value)
        w.currentIndexChanged.connect(self.sig_changed)
        return w

    def _browse(self):
        what = f"Choose {field_label(self.name).lower()}"
        if self.field.metadata.get("path") == "folder":  # F(..., path="folder"): e.g. method.from_adapter
            path = QFileDialog.getExistingDirectory(self, what)
        else:
            path, _ = QFileDialog.getOpenFileName(self, what)
        if path:
            self.set_value(path)

    # -- value in/out ------------------------------------------------------------------------
    def set_value(self, v) -> None:
        w = self.widget
        if self.kind == "choice":
            i = w.findData(v)
            if i < 0:  # keep an out-of-list value visible so validation can name it
                w.addItem(str(v), v)
                i = w.count() - 1
            w.setCurrentIndex(i)
        elif self.kind == "bool":
            w.setChecked(bool(v))
        elif self.kind == "int":
            w.setValue(int(v))
        elif v is None:
            w.setText("")
        elif self.kind == "number":
            w.setText(format_float(v) if isinstance(v, float) else str(v))
        elif self.kind in ("list", "list_or_str"):
            w.setText(_list_text(v, self.kind))
        elif self.kind == "dict":
            w.setText(yaml.safe_dump(v, default_flow_style=True).strip() if v else "")
        else:
            w.setText(str(v))

    def raw(self):
        w = self.widget
        if self.kind == "choice":
            return w.currentData()
        if self.kind == "bool":
            return w.isChecked()
        if self.kind == "int":
            if not w.cleanText().strip():  # QSpinBox.value() would be the last number: never used unseen
                raise ConfigError(self.path, "must be a whole number")
            return w.value()
        text = w.text().strip()
        if not text and self.nullable:
            return None
        if self.kind in ("list", "list_or_str"):
            return _parse_list(text, self.kind, self.path)
        if self.kind == "dict":
            if not text:
                return {}
            try:
                value = yaml.safe_load(text if text.startswith("{") else "{" + text + "}")
            except yaml.YAMLError:
                raise ConfigError(self.path, "must be a mapping like {prompt: question}", text) from None
            return value
        if self.kind == "number":
            return text
        return w.text()

    def value(self):
        """The coerced value; raises ConfigError when the text cannot be one."""
        return coerce_value(self.klass, self.name, self.raw(), self.path)


def _list_text(v, kind: str) -> str:
    """Lists as "a, b"; a one-item list as "[a]" so it stays distinct from the word "a"."""
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, dict) for x in v):  # data.sources: [{path: a.jsonl, weight: 2}, …]
            return yaml.safe_dump(list(v), default_flow_style=True, width=10**6).strip()
        if kind == "list_or_str" and len(v) == 1 or not v:
            return "[" + ", ".join(map(str, v)) + "]"
        return ", ".join(map(str, v))
    return str(v)


def _parse_list(text: str, kind: str, path: str):
    if text.startswith("["):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(path, "must be a list like [a, b]", text) from None
        if not isinstance(value, list):
            raise ConfigError(path, "must be a list like [a, b]", text)
        return [x if isinstance(x, dict) else str(x) for x in value]
    if kind == "list_or_str" and "," not in text:
        return text  # a single word is the field's string form (auto, all-linear, all, …)
    return [s.strip() for s in text.split(",") if s.strip()]


class DataclassForm(QWidget):
    """A form for one config dataclass; advanced fields sit in a collapsible section."""

    sig_changed = Signal()

    def __init__(self, klass, section: str, exclude=(), parent=None, show_advanced: bool = False):
        super().__init__(parent)
        self.klass, self.section = klass, section
        self.editors: dict[str, FieldEditor] = {}
        self._errors: dict[str, QLabel] = {}
        self._labels: dict[str, QLabel] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.basic = self._form_layout()
        outer.addLayout(self.basic)
        self.advanced_box = QWidget(self)
        self.advanced = self._form_layout()
        self.advanced_box.setLayout(self.advanced)
        self.toggle = QToolButton(self)
        self.toggle.setText("Advanced")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self.set_advanced_visible)
        outer.addWidget(self.toggle)
        outer.addWidget(self.advanced_box)
        has_adv = False
        for f in dataclasses.fields(klass):
            # A nested section (train.distributed) is a group of its own with its own panel,
            # not one row of this form.
            if f.name in exclude or is_section(f):
                continue
            adv = bool(f.metadata.get("advanced"))
            has_adv |= adv
            self._add_row(f, self.advanced if adv else self.basic)
        self.toggle.setVisible(has_adv)
        self.set_advanced_visible(show_advanced and has_adv)

    @staticmethod
    def _form_layout() -> QFormLayout:
        lay = QFormLayout()
        lay.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        lay.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        lay.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        return lay

    def _add_row(self, f, layout: QFormLayout):
        path = f"{self.section}.{f.name}" if self.section else f.name
        ed = FieldEditor(self.klass, f, path, self)
        ed.sig_changed.connect(self.sig_changed)
        holder = QWidget(self)
        v = QVBoxLayout(holder)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(1)
        v.addWidget(ed)
        err = QLabel(holder)
        err.setWordWrap(True)
        err.setStyleSheet(f"color: {ERROR_COLOR};")
        err.setObjectName(f"error:{path}")
        err.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        err.hide()
        v.addWidget(err)
        label = QLabel(field_label(f.name) + ":", self)
        label.setToolTip(f.metadata.get("help", ""))
        label.setBuddy(ed.widget)
        layout.addRow(label, holder)
        self.editors[f.name] = ed
        self._errors[path] = err
        self._labels[path] = label

    def set_advanced_visible(self, on: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(on)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.advanced_box.setVisible(on)

    # -- values ------------------------------------------------------------------------------
    def set_values(self, obj) -> None:
        """Show a dataclass instance (or a dict of its fields) without emitting one change per field."""
        d = obj if isinstance(obj, dict) else {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        self.blockSignals(True)
        try:
            for name, ed in self.editors.items():
                if name in d:
                    ed.set_value(d[name])
        finally:
            self.blockSignals(False)
        self.sig_changed.emit()

    def values(self) -> tuple[dict, dict[str, str]]:
        """(coerced values, {path: message}) — a field that does not parse is left out of the values."""
        out, errors = {}, {}
        for name, ed in self.editors.items():
            try:
                out[name] = ed.value()
            except ConfigError as e:
                errors[ed.path] = e.message
        return out, errors

    # -- errors and warnings -------------------------------------------------------------------
    def set_errors(self, errors: dict[str, str]) -> None:
        """Mark the fields named in ``errors`` (paths outside this form are ignored)."""
        self._error_msgs = {p: m for p, m in errors.items() if p in self._errors}
        self._render()

    def set_warnings(self, warnings: dict[str, str]) -> None:
        """Show ``warnings`` under their fields (amber; an error on the same field wins)."""
        self._warning_msgs = {p: m for p, m in warnings.items() if p in self._errors}
        self._render()

    def _render(self) -> None:
        errors = getattr(self, "_error_msgs", {})
        warnings = getattr(self, "_warning_msgs", {})
        for path, label in self._errors.items():
            msg, warn = errors.get(path), warnings.get(path)
            ed = self.editors[path.rsplit(".", 1)[-1]]
            if msg:
                label.setText(msg)
                label.setStyleSheet(f"color: {ERROR_COLOR};")
                label.show()
                ed.widget.setStyleSheet(_invalid_style(ed.widget))
                if self._is_advanced(ed):
                    self.set_advanced_visible(True)  # never hide the reason Start is disabled
            elif warn:
                label.setText("⚠ " + warn)
                label.setStyleSheet(f"color: {WARNING_COLOR};")
                label.show()
                ed.widget.setStyleSheet(_invalid_style(ed.widget, WARNING_COLOR))
                if self._is_advanced(ed):
                    self.set_advanced_visible(True)
            else:
                label.hide()
                label.clear()
                ed.widget.setStyleSheet("")

    def show_for_task(self, task: str) -> None:
        """Show only the rows of fields that serve ``task`` (train.task): a field whose metadata
        lists ``tasks`` is hidden for the others (engine.fields.F)."""
        for ed in self.editors.values():
            tasks = ed.field.metadata.get("tasks")
            visible = tasks is None or task in tasks
            self._labels[ed.path].setVisible(visible)
            ed.parentWidget().setVisible(visible)

    def _is_advanced(self, ed: FieldEditor) -> bool:
        return bool(ed.field.metadata.get("advanced"))

    def error_text(self, name: str) -> str:
        path = self.editors[name].path
        if path not in getattr(self, "_error_msgs", {}):
            return ""
        label = self._errors[path]
        return label.text() if not label.isHidden() else ""

    def warning_text(self, name: str) -> str:
        path = self.editors[name].path
        return getattr(self, "_warning_msgs", {}).get(path, "") if path not in getattr(self, "_error_msgs", {}) else ""


def _invalid_style(w: QWidget, color: str = ERROR_COLOR) -> str:
    cls = type(w).__name__
    return f"{cls} {{ border: 1px solid {color}; border-radius: 3px; padding: 1px 3px; }}"
