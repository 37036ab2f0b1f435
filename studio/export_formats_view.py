"""The Export tab's format pages, built from the engine's export-format registry
(engine.export.formats.FORMATS): no list of formats or types is kept in the studio.

Each ``FormatPage`` shows a format's description and files, its option (GGUF type, dtype, tensor
type) and — once the "export_choices" job (studio/export_jobs.py) answers — the size of every
option before anything is written, which options this machine can make (K-quants need
llama-cpp-python: the page then says how to install it, and those types cannot be chosen), and
why the run cannot be exported so, when it cannot.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.export.formats import FORMATS, ExportFormat
from studio.forms import ERROR_COLOR
from studio.widgets import compact, muted
from studio.wording import window_text

VERIFIED_FORMATS_NEED = ("mergeable", "lora_adapter")   # formats whose export answers sample prompts


def registry_modes() -> list[tuple[str, str]]:
    """(name, title) of every registry format, in the registry's order."""
    return [(f.name, f.title) for f in FORMATS.values()]


def reveal(widget: QWidget) -> None:
    """Scroll the tab so ``widget`` is in view (after an export, its result sits below the pages)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QScrollArea

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    if parent is not None:
        QTimer.singleShot(0, lambda: parent.ensureWidgetVisible(widget, 20, 20))


def default_folder(name: str, option: str | None) -> str:
    """The export's default folder name: ``gguf-q4_k_m``, ``merged-auto``, ``adapter``."""
    return f"{name}-{option}" if option else name


class FormatPage(QWidget):
    """One registry format: its option combo (``option``, objectName ``export.option:<name>``),
    the sizes of its options (``sizes`` table, and ``size`` beside the combo), the verify box for
    formats that answer sample prompts, and notes (why not; how to install the K-quants)."""

    sig_option = Signal(str)

    def __init__(self, fmt: ExportFormat, parent=None):
        super().__init__(parent)
        self.fmt = fmt
        self.size_by_option: dict[str | None, dict] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        desc = QLabel(html.escape(fmt.description) + (f"<br><i>Files:</i> {html.escape(fmt.outputs)}"
                                                       if fmt.outputs else ""))
        desc.setWordWrap(True)
        lay.addWidget(desc)
        self.form = QFormLayout()
        self.option: QComboBox | None = None
        self.size = QLabel("")
        self.size.setObjectName(f"export.size:{fmt.name}")
        if fmt.options:
            self.option = compact(QComboBox())
            self.option.setObjectName(f"export.option:{fmt.name}")
            self.option.addItems(list(fmt.options))
            if fmt.default_option:
                self.option.setCurrentText(fmt.default_option)
            self.option.currentTextChanged.connect(self._option_changed)
            self.form.addRow(fmt.option_label[:1].upper() + fmt.option_label[1:], self.option)
        self.form.addRow("Size", self.size)
        self.verify: QCheckBox | None = None
        if any(n in fmt.needs for n in VERIFIED_FORMATS_NEED):
            self.verify = QCheckBox("Verify: the file answers sample prompts like the merged model")
            self.verify.setToolTip("After writing, the file answers five sample prompts greedily in llama.cpp "
                                   "(when llama-cpp-python is installed; else transformers' GGUF reader) and the "
                                   "answers are compared with the merged model's; the result is a sentence here "
                                   "and in the model card.")
            self.verify.setChecked(True)
            self.form.addRow(self.verify)
        lay.addLayout(self.form)
        self.note = QLabel("")
        self.note.setObjectName(f"export.note:{fmt.name}")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(f"color: {ERROR_COLOR};")
        self.note.hide()
        lay.addWidget(self.note)
        self.hint = muted("")
        self.hint.setObjectName(f"export.install-hint:{fmt.name}")
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint.hide()
        lay.addWidget(self.hint)
        self.sizes = QTableWidget(0, 3)
        self.sizes.setObjectName(f"export.sizes:{fmt.name}")
        self.sizes.setHorizontalHeaderLabels([fmt.option_label or "Format", "Size", "Note"])
        self.sizes.verticalHeader().hide()
        self.sizes.verticalHeader().setDefaultSectionSize(self.sizes.fontMetrics().height() + 6)
        self.sizes.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.sizes.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.sizes.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        hh = self.sizes.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.sizes.setMaximumHeight(8 * (self.sizes.fontMetrics().height() + 6))
        self.sizes.cellClicked.connect(self._row_clicked)
        self.sizes.setVisible(len(fmt.options) > 1)
        lay.addWidget(self.sizes)
        self.sizes_note = muted("Sizes appear once a run is chosen.")
        lay.addWidget(self.sizes_note)

    def current_option(self) -> str | None:
        return self.option.currentText() if self.option is not None else None

    def _option_changed(self, value: str) -> None:
        self._show_size()
        self.sig_option.emit(value)

    def _row_clicked(self, row: int, _col: int) -> None:
        item = self.sizes.item(row, 0)
        if self.option is not None and item is not None and item.flags() & Qt.ItemFlag.ItemIsEnabled:
            self.option.setCurrentText(item.text())

    def clear(self) -> None:
        self.size_by_option = {}
        self.sizes.setRowCount(0)
        self.size.setText("")
        self.note.hide()
        self.hint.hide()
        self.sizes_note.setText("Estimating the sizes…")
        self.sizes_note.show()

    def set_choices(self, choice: dict | None, sizes: list[dict], install_hint: str, sizes_error: str = "") -> None:
        """Show the export_choices job's answer for this format."""
        choice = choice or {"available": True, "reason": "", "options": []}
        opts = {o["value"]: o for o in choice.get("options") or []}
        self.size_by_option = {s.get("option"): s for s in sizes if s.get("format") == self.fmt.name}
        # Options this machine cannot make are shown but cannot be chosen.
        if self.option is not None and isinstance(self.option.model(), QStandardItemModel):
            model = self.option.model()
            for i in range(self.option.count()):
                o = opts.get(self.option.itemText(i)) or {}
                ok = o.get("available", True)
                item = model.item(i)
                item.setEnabled(bool(ok))
                item.setToolTip(window_text(o.get("reason") or o.get("description") or ""))
            if not (opts.get(self.option.currentText()) or {}).get("available", True):
                first = next((i for i in range(self.option.count()) if model.item(i).isEnabled()), -1)
                if first >= 0:
                    self.option.setCurrentIndex(first)
        missing = [v for v, o in opts.items() if not o.get("available", True)]
        self.hint.setText(f"{len(missing)} types are not offered here ({', '.join(missing[:4])}"
                          f"{', …' if len(missing) > 4 else ''}). {install_hint}" if missing else "")
        self.hint.setVisible(bool(missing))
        reason = choice.get("reason") or ""
        self.note.setText(window_text(reason))
        self.note.setVisible(bool(reason))
        rows = [self.size_by_option[o] for o in (self.fmt.options or (None,)) if o in self.size_by_option]
        self.sizes.setRowCount(len(rows))
        for r, s in enumerate(rows):
            o = opts.get(s.get("option")) or {}
            name = QTableWidgetItem(s.get("option") or self.fmt.name)
            size = QTableWidgetItem(s.get("text") or "—")
            size.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            why = window_text(s.get("reason") or "") if not s.get("available", True) else (o.get("description") or "")
            note = QTableWidgetItem(why)
            note.setToolTip(why)
            for col, it in enumerate((name, size, note)):
                if not s.get("available", True):
                    it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                self.sizes.setItem(r, col, it)
        self.sizes_note.setText(window_text(sizes_error) if sizes_error else "")
        self.sizes_note.setVisible(bool(sizes_error))
        self._show_size()

    def _show_size(self) -> None:
        s = self.size_by_option.get(self.current_option())
        if s is None:
            self.size.setText("")
        elif not s.get("available", True) and not s.get("bytes"):
            self.size.setText("—")
        else:
            self.size.setText(s.get("text") or "")
        if self.option is not None:
            for r in range(self.sizes.rowCount()):
                item = self.sizes.item(r, 0)
                if item is not None and item.text() == self.option.currentText():
                    self.sizes.selectRow(r)
