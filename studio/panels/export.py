"""Export tab: every format of the engine's export-format registry (adapter, merged model, GGUF,
Ollama, GGUF LoRA adapter: studio/export_formats_view.py builds their pages, with each option's
size before export), or a weighted merge of several LoRA adapters (weights, combination, density).

Exports run as a task in the "export" helper process (studio/tasks.py: merging loads a whole
model, which must not hold the window's GIL) with progress; errors arrive as the engine's plain
sentences (ExportError is written for people). Outputs are atomic: a failed export leaves no
half-written folder behind, so there is nothing to clean up here.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.export.result import ExportResult
from studio import choices
from studio.export_formats_view import FormatPage, default_folder, reveal
from studio.forms import ERROR_COLOR
from studio.messages import window_message
from studio.panels.base import Area, PanelDefaults, Studio
from studio.picker import RunPicker, follow_runs
from studio.tasks import LatestJob, Task, start_job
from studio.widgets import CheckedDoubleSpinBox, scrolled_body
from studio.wording import window_text


class _Pages(QWidget):
    """One page shown at a time, and only its height taken (a QStackedWidget is as tall as its
    tallest page: the weighted merge's table pushed the Export button out of a short window)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._pages: list[QWidget] = []
        self._current = -1

    def addWidget(self, page: QWidget) -> None:  # noqa: N802 - QStackedWidget's name
        self._pages.append(page)
        self._lay.addWidget(page)
        page.setVisible(len(self._pages) == 1)
        if self._current < 0:
            self._current = 0

    def setCurrentIndex(self, index: int) -> None:  # noqa: N802
        self._current = index
        for i, page in enumerate(self._pages):
            page.setVisible(i == index)

    def currentIndex(self) -> int:  # noqa: N802
        return self._current

    def count(self) -> int:
        return len(self._pages)

    def widget(self, index: int) -> QWidget:
        return self._pages[index]


class ExportPanel(QWidget, PanelDefaults):
    key, title, area = "export", "Export", Area.CENTRAL
    sig_export_started = Signal()
    sig_export_finished = Signal(object)   # the ExportResult
    sig_error = Signal(str)
    sig_choices = Signal(object)           # the export_choices job's answer (formats, sizes)

    @classmethod
    def create(cls, studio: Studio) -> ExportPanel:
        panel = cls()
        follow_runs(panel, studio)  # a finished run's outputs become choices (a new adapter reloads)
        return panel

    def __init__(self, parent=None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self._can_merge = True
        self.task: Task | None = None
        self._out_edited = False
        self._running = False
        self._merge_text = ""
        self._picked = False
        self.last_result: ExportResult | None = None
        self.export_choices: dict = {}
        # What the run can be exported to and the sizes: a helper job (imports llama.cpp, builds
        # the model on the meta device), never in the window's thread.
        self._choices_job = LatestJob("export_choices", delay_ms=100, parent=self, lane="fast")
        self._choices_job.sig_result.connect(self._on_choices)
        self._choices_job.sig_error.connect(lambda e: [p.set_choices(None, [], "", window_message(e))
                                                       for p in self.format_pages.values()])
        self._build()
        self.checkpoint.currentTextChanged.connect(self._request_choices)
        self._mode_changed()

    # ---- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = scrolled_body(self)
        self.picker = RunPicker("Run to export:")
        self.picker.setToolTip("Any run in the Runs tab; below, its final adapter or any checkpoint")
        self.picker.combo.activated.connect(lambda _i: setattr(self, "_picked", True))
        self.picker.sig_run.connect(self.set_run_dir)
        lay.addWidget(self.picker)
        self.run_label = QLabel("No run selected: finish or open a run to export it.")
        self.run_label.setWordWrap(True)
        lay.addWidget(self.run_label)

        what = QGroupBox("What to export")
        wl = QVBoxLayout(what)
        self.mode = QComboBox()
        for key, title in choices.export_modes():
            self.mode.addItem(title, key)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        wl.addWidget(self.mode)
        top = QFormLayout()
        self.checkpoint = QComboBox()
        self.checkpoint.setObjectName("export.adapter")
        self.checkpoint.setToolTip("final = the adapter saved at the end; checkpoint-N = an intermediate one")
        top.addRow("Adapter", self.checkpoint)
        self.checkpoint_row = top
        wl.addLayout(top)

        self.pages = _Pages()
        self.format_pages: dict[str, FormatPage] = {}
        for key, _title in choices.export_modes():
            self.pages.addWidget(self._page_weighted() if key == "weighted" else self._format_page(key))
        wl.addWidget(self.pages)
        self.merge_note = QLabel()
        self.merge_note.setWordWrap(True)
        self.merge_note.hide()
        wl.addWidget(self.merge_note)
        lay.addWidget(what)

        out_box = QGroupBox("Output folder")
        ol = QVBoxLayout(out_box)
        row = QHBoxLayout()
        self.out = QLineEdit()
        self.out.setPlaceholderText("Folder to create")
        self.out.textEdited.connect(lambda _: setattr(self, "_out_edited", True))
        row.addWidget(self.out, 1)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose the output folder")
        browse.clicked.connect(self._browse_out)
        row.addWidget(browse)
        ol.addLayout(row)
        self.overwrite = QCheckBox("Replace the folder if it exists")
        ol.addWidget(self.overwrite)
        lay.addWidget(out_box)

        buttons = QHBoxLayout()
        self.export_btn = QPushButton("Export")
        self.export_btn.clicked.connect(self.start_export)
        buttons.addWidget(self.export_btn)
        self.open_btn = QPushButton("Open folder")
        self.open_btn.setObjectName("export.open-folder")
        self.open_btn.setToolTip("Show the exported files in the file manager")
        self.open_btn.clicked.connect(self.open_folder)
        self.open_btn.hide()
        buttons.addWidget(self.open_btn)
        buttons.addStretch(1)
        lay.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        lay.addWidget(self.progress)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error.hide()
        lay.addWidget(self.error)
        lay.addStretch(1)

    def _format_page(self, name: str) -> QWidget:
        """A registry format's page (its option, sizes, verify box); ``dtype`` / ``gguf_type`` /
        ``verify`` name the merged and GGUF pages' controls, as before the registry."""
        from engine.export.formats import FORMATS

        page = FormatPage(FORMATS[name])
        page.sig_option.connect(lambda _v: self._mode_changed())  # the default folder says the type
        self.format_pages[name] = page
        if name == "merged":
            self.dtype = page.option
            self.dtype.setToolTip("Precision of the merged weights; auto = the base checkpoint's own. QLoRA runs "
                                  "are merged into a freshly loaded full-precision base, never the 4-bit weights.")
            self.shard = QLineEdit("2GB")
            self.shard.setToolTip("safetensors files are split above this size (e.g. 2GB, 500MB)")
            page.form.addRow("Shard size", self.shard)
        elif name == "gguf":
            self.gguf_type = page.option
            self.verify = page.verify
        return page

    def _page_weighted(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Adapter (run or adapter folder)", "Weight"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(110)
        v.addWidget(self.table)
        row = QHBoxLayout()
        add_run = QPushButton("Add this run")
        add_run.clicked.connect(lambda: self.run_dir and self.add_adapter(str(self.run_dir)))
        add = QPushButton("Add folder…")
        add.clicked.connect(self._browse_adapter)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_selected)
        for b in (add_run, add, remove):
            row.addWidget(b)
        row.addStretch(1)
        v.addLayout(row)
        f = QFormLayout()
        self.combination = QComboBox()
        self.combination.addItems(choices.combinations())
        self.combination.currentTextChanged.connect(self._combination_changed)
        f.addRow("Combination", self.combination)
        self.density = CheckedDoubleSpinBox(0.01, 1.0, "Density")
        self.density.setSingleStep(0.05)
        self.density.valueChanged.connect(lambda _v: hasattr(self, "export_btn") and self._update_enabled())
        self.density.setValue(0.5)
        self.density.setToolTip("Fraction of each adapter's entries kept by ties / dare")
        f.addRow("Density", self.density)
        self.combination_help = QLabel(wordWrap=True)
        f.addRow(self.combination_help)
        v.addLayout(f)
        self._combination_changed(self.combination.currentText())
        return w

    # ---- inputs ---------------------------------------------------------------------------------
    def follow(self, path) -> None:
        """A run finished: show it unless the user picked another run here."""
        if path and (not self._picked or (self.run_dir is not None and Path(path) == self.run_dir)):
            self.picker.follow(str(path))

    def follow_shown(self, path) -> None:
        if path and not self._picked and (Path(path) / "adapter").exists():
            self.picker.follow(str(path))

    def set_run_dir(self, path) -> None:
        if not path:
            return
        from engine.export.runinfo import load_run

        p = Path(path)
        self._show_error("")
        self.status.setText("")
        try:
            info = load_run(p)
        except Exception as e:  # noqa: BLE001 - shown as a message
            self.run_dir = None
            self.checkpoint.clear()
            self.run_label.setText(f"Run: {p}")
            self._show_error(window_message(e))
            self._update_enabled()
            return
        self.run_dir = p
        # final, best (when known), every checkpoint, base: the engine's export sources
        labels = info.choices() if info.sources() else []
        current = self.checkpoint.currentText()
        self.checkpoint.clear()
        self.checkpoint.addItems(labels)
        if current in labels:
            self.checkpoint.setCurrentText(current)
        self._can_merge = info.gives_full_model
        self._merge_text = "" if self._can_merge else (
            f"{info.method.title} cannot be merged: {info.method.merge_note}. Merging exports the adapter only.")
        self.run_label.setText(f"Run: {p}  ·  {info.method.title} on {info.config.model.name_or_path}")
        if not labels:
            self._show_error("This run has no adapter yet.")
        self._out_edited = False
        self._mode_changed()
        self._request_choices()

    def _request_choices(self, *_) -> None:
        """Ask the helper for what this run can be exported to and every size (no weights load)."""
        if self.run_dir is None or not self.checkpoint.count():
            return
        for page in self.format_pages.values():
            page.clear()
        self._choices_job.request(str(self.run_dir), self.checkpoint.currentText() or None)

    @Slot(object)
    def _on_choices(self, value: dict) -> None:
        self.export_choices = value
        by_name = {f["name"]: f for f in value.get("formats") or []}
        for name, page in self.format_pages.items():
            page.set_choices(by_name.get(name), value.get("sizes") or [], value.get("install_hint") or "",
                             value.get("sizes_error") or "")
        self.sig_choices.emit(value)

    def set_adapter(self, path) -> None:
        if self.run_dir is not None:
            self.set_run_dir(self.run_dir)

    def add_adapter(self, path: str, weight: float = 1.0) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QTableWidgetItem(str(path)))
        self.table.setItem(r, 1, QTableWidgetItem(f"{weight:g}"))
        self._update_enabled()

    def adapters_and_weights(self) -> tuple[list[str], list[str]]:
        paths, weights = [], []
        for r in range(self.table.rowCount()):
            p, w = self.table.item(r, 0), self.table.item(r, 1)
            if p is not None and p.text().strip():
                paths.append(p.text().strip())
                weights.append(w.text().strip() if w is not None else "1")
        return paths, weights

    def _browse_adapter(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Run or adapter folder", str(self.run_dir or Path.home()))
        if d:
            self.add_adapter(d)

    def _remove_selected(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)
        self._update_enabled()

    def _browse_out(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Parent folder for the export", str(self.run_dir or Path.home()))
        if d:
            self.out.setText(str(Path(d) / self._default_out_name()))
            self._out_edited = True

    def mode_key(self) -> str:
        return self.mode.currentData()

    def _default_out_name(self) -> str:
        key = self.mode_key()
        if key == "weighted":
            return "weighted-adapter"
        return default_folder(key, self.format_pages[key].current_option())

    @Slot()
    def _mode_changed(self, *_) -> None:
        key = self.mode_key()
        self.pages.setCurrentIndex([k for k, _ in choices.export_modes()].index(key))
        self.checkpoint.setEnabled(key != "weighted")
        note = getattr(self, "_merge_text", "")
        self.merge_note.setText(note)
        self.merge_note.setVisible(bool(note) and key in ("merged", "gguf", "ollama"))
        if not self._out_edited and self.run_dir is not None:
            self.out.setText(str(self.run_dir / "exports" / self._default_out_name()))
        self._update_enabled()

    @Slot(str)
    def _combination_changed(self, name: str) -> None:
        self.density.setEnabled(name in choices.density_combinations())
        self.combination_help.setText(choices.combination_help(name))

    # ---- running --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        # Cleared by the done/failed slots: the UI state follows the signals it has processed.
        return self._running

    def _job(self) -> tuple[str, dict]:
        """(kind, the engine function's kwargs) for the current choices; validated in the UI thread."""
        key = self.mode_key()
        out = self.out.text().strip()
        if not out:
            raise ValueError("Choose an output folder.")
        common = {"out": out, "overwrite": self.overwrite.isChecked()}
        which = self.checkpoint.currentText() or None
        if key == "weighted":
            paths, weights = self.adapters_and_weights()
            if len(paths) < 2:
                raise ValueError("Add at least two adapters to merge.")
            method = self.combination.currentText()
            dense = method in choices.density_combinations()
            return "weighted", dict(adapters=paths, weights=",".join(weights), method=method,
                                    density=self.density.value() if dense else None, **common)
        if self.run_dir is None:
            raise ValueError("Open a run first.")
        run = str(self.run_dir)
        if key == "merged":  # the registry's merged export has no shard size; the engine function has
            return "merged", dict(run=run, which=which, dtype=self.dtype.currentText(),
                                  max_shard_size=self.shard.text().strip() or "2GB", **common)
        page = self.format_pages[key]
        kwargs = dict(run=run, which=which, option=page.current_option(), **common)
        if page.verify is not None:
            kwargs["verify"] = page.verify.isChecked()
        return "format:" + key, kwargs

    @Slot()
    def start_export(self) -> None:
        if self.busy:
            return
        self._show_error("")
        try:
            kind, kwargs = self._job()
        except ValueError as e:
            self._show_error(str(e))
            return
        self.status.setText("Starting…")
        self.open_btn.hide()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.export_btn.setEnabled(False)
        self._running = True
        self.sig_export_started.emit()
        if kind.startswith("format:"):  # a registry format (engine.export.formats)
            self.task = start_job("export_format", kind.split(":", 1)[1], kwargs, lane="export", parent=self)
        else:
            self.task = start_job("export", kind, kwargs, lane="export", parent=self)
        self.task.sig_status.connect(self._on_stage)
        self.task.sig_progress.connect(self._on_progress)
        self.task.sig_result.connect(self._on_done)
        self.task.sig_error.connect(lambda e: self._on_failed(window_message(e)))

    @Slot(str)
    def _on_stage(self, stage: str) -> None:
        self.status.setText(stage + "…")

    @Slot(object, object)
    def _on_progress(self, done, total) -> None:
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(max(0, int(done or 0)))
        else:
            self.progress.setRange(0, 0)  # busy indicator for stages of unknown length

    @Slot(object)
    def _on_done(self, value: dict) -> None:
        result = ExportResult(value["kind"], Path(value["path"]), value.get("note"), value.get("details") or {})
        self._running = False
        self.last_result = result
        self.open_btn.setVisible(True)
        self.open_btn.setToolTip(f"Open {result.path.parent if result.path.is_file() else result.path}")
        self.progress.hide()
        text = result.summary()
        if result.note:
            text = result.note + "\n" + text
        self.status.setText(text)
        self._update_enabled()
        reveal(self.open_btn)
        reveal(self.status)   # where the files went and the verification sentence, in view
        self.sig_export_finished.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._running = False
        self.progress.hide()
        self.status.setText("")
        self._show_error(message)
        self._update_enabled()
        self.sig_error.emit(message)

    def _update_enabled(self) -> None:
        if self.busy:
            self.export_btn.setEnabled(False)
            return
        if self.mode_key() == "weighted":
            self.export_btn.setEnabled(self.table.rowCount() >= 2 and self.density.is_valid())
        else:
            self.export_btn.setEnabled(self.run_dir is not None and self.checkpoint.count() > 0)

    def open_folder(self) -> bool:
        """Show the last export in the desktop's file manager (the folder, or a file's folder)."""
        if self.last_result is None:
            return False
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        path = self.last_result.path
        folder = path if path.is_dir() else path.parent
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _show_error(self, text: str) -> None:
        self.error.setText(window_text(text))
        self.error.setVisible(bool(text))

    def shutdown(self) -> None:
        """The window is closing: drop a running export (the helper's atomic write leaves nothing)."""
        if self.task is not None:
            self.task.cancel()
