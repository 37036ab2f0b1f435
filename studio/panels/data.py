"""Data panel: open a data file, see its detected format, override the column mapping, preview
examples as the model will see them (trained tokens highlighted) and their token lengths."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, replace
from pathlib import Path

from PySide6.QtCore import QEvent, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAbstractTextDocumentLayout, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.config import DataConfig
from studio import theme
from studio.choices import data_file_filter, format_roles
from studio.config_model import find_path
from studio.data_report_view import apply_fix, report_tabs
from studio.forms import ERROR_COLOR, DataclassForm
from studio.jobs import Preview
from studio.lazy import np
from studio.messages import is_user_error, window_message
from studio.panels.base import Area, PanelDefaults, Studio
from studio.tasks import LatestJob
from studio.widgets import PlotSlot, compact, heading, muted, scroll, scrolled_body
from studio.wording import control_label, control_name, window_text

CELL_CHARS = 1500        # a very long example is cut in the table (the tooltip says so)

AUTO_COLUMN = "(detected)"


def segments_html(segments, trained_bg: str, masked_fg: str, limit: int = CELL_CHARS) -> str:
    """Rich text for one example: trained pieces on a tinted background, masked ones dimmed."""
    out, used = [], 0
    for text, trained in segments:
        if used >= limit:
            out.append("<span>…</span>")
            break
        piece = text[: limit - used]
        used += len(piece)
        body = html.escape(piece).replace("\n", "<br>")
        style = f"background-color:{trained_bg};" if trained else f"color:{masked_fg};"
        out.append(f'<span style="{style}">{body}</span>')
    return f'<div style="white-space:pre-wrap">{"".join(out)}</div>'


HTML_ROLE = Qt.ItemDataRole.UserRole + 1
TEXT_COL = 1
_PAD = 4
MAX_ROW_HEIGHT = 240  # one very long example must not push all others out of view


class HtmlDelegate(QStyledItemDelegate):
    """Paints an item's HTML (word-wrapped, palette text colour) and sizes the row to fit it.

    A QLabel per cell would be simpler but its size hint ignores the column width, so wrapped
    rows get the wrong height; a QTextDocument laid out at the column width gets it right.
    """

    def _doc(self, index, width: int, font) -> QTextDocument:
        doc = QTextDocument()
        doc.setDefaultFont(font)
        doc.setDocumentMargin(0)
        doc.setHtml(index.data(HTML_ROLE) or "")
        doc.setTextWidth(max(50, width - 2 * _PAD))
        return doc

    def paint(self, painter, option, index):
        self.initStyleOption(option, index)
        style = option.widget.style() if option.widget else QApplication.style()
        option.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        doc = self._doc(index, option.rect.width(), option.font)
        ctx = QAbstractTextDocumentLayout.PaintContext()
        group = QPalette.ColorGroup.Normal
        role = QPalette.ColorRole.HighlightedText if option.state & QStyle.StateFlag.State_Selected \
            else QPalette.ColorRole.Text
        ctx.palette.setColor(QPalette.ColorRole.Text, option.palette.color(group, role))
        painter.save()
        painter.translate(option.rect.left() + _PAD, option.rect.top() + _PAD)
        clip = QRectF(0, 0, option.rect.width() - 2 * _PAD, option.rect.height() - 2 * _PAD)
        painter.setClipRect(clip)
        ctx.clip = clip
        doc.documentLayout().draw(painter, ctx)
        painter.restore()

    def sizeHint(self, option, index):
        view = self.parent()
        width = view.columnWidth(index.column()) if view is not None else option.rect.width()
        doc = self._doc(index, width, option.font)
        return QSize(width, min(MAX_ROW_HEIGHT, int(doc.size().height()) + 2 * _PAD))


def file_key(path: str) -> str:
    """The identity of a data file for its column mapping: its absolute, resolved path."""
    if not path:
        return ""
    found = find_path(path)
    try:
        return str((found or Path(path).expanduser()).resolve())
    except OSError:
        return path


class ColumnMapping(QWidget):
    """``data.columns`` as a few combos (internal name → one of the file's columns), and a line that
    says the mapping in words ("output ← answer") with a Reset button.

    A mapping belongs to one file: each file keeps its own (``maps``, by resolved path, saved in
    the settings), opening another file shows that file's mapping (usually none: detection), and
    a mapping made for file A never reaches file B's preview or run.
    """

    sig_changed = Signal()
    sig_reset = Signal()   # the file's mapping and format were forgotten (the Format box follows)

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.setObjectName("field:data.columns")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.form = QFormLayout()
        self.form.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(self.form)
        row = QHBoxLayout()
        self.summary = QLabel("")
        self.summary.setObjectName("mapping-summary")
        self.summary.setWordWrap(True)
        row.addWidget(self.summary, 1)
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("Forget this file's mapping: its columns are detected again")
        self.reset_btn.clicked.connect(self.reset)
        row.addWidget(self.reset_btn, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(row)
        self.combos: dict[str, QComboBox] = {}
        self.mapping: dict = {}
        self.file = ""
        self.maps: dict[str, dict] = self._load()
        self.formats: dict[str, str] = self._load_formats()  # data.format chosen per file (auto: none)
        self._key = None
        self.note = muted("Open a file to map its columns.")
        self.form.addRow(self.note)
        self._show_summary()

    # -- per-file store ----------------------------------------------------------------------
    def _load(self) -> dict[str, dict]:
        if self.settings is None:
            return {}
        try:
            value = json.loads(self.settings.get("data/column_maps") or "{}")
        except ValueError:
            return {}
        return {str(k): dict(v) for k, v in value.items() if isinstance(v, dict) and v} if isinstance(value, dict) else {}

    def _load_formats(self) -> dict[str, str]:
        if self.settings is None:
            return {}
        try:
            value = json.loads(self.settings.get("data/formats") or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def _save(self) -> None:
        if self.settings is not None:
            self.settings.set("data/column_maps", json.dumps(self.maps))
            self.settings.set("data/formats", json.dumps(self.formats))

    def set_format(self, fmt: str | None) -> None:
        """The format chosen for the current file (the mapping's other half: it too is per file)."""
        if not self.file:
            return
        if fmt and fmt != "auto":
            self.formats[self.file] = fmt
        else:
            self.formats.pop(self.file, None)
        self._save()

    def file_format(self) -> str:
        """The format chosen for the current file, or auto."""
        return self.formats.get(self.file, "auto")

    def _store(self) -> None:
        if not self.file:
            return
        if self.mapping:
            self.maps[self.file] = dict(self.mapping)
        else:
            self.maps.pop(self.file, None)
        self._save()

    def set_file(self, path: str, mapping: dict | None = None, fmt: str | None = None) -> bool:
        """Show the mapping of ``path`` (``mapping``, ``fmt``: what a run file gives it, which becomes
        that file's). Returns whether the mapping in effect changed."""
        self.file = file_key(path)
        if fmt is not None:
            self.set_format(fmt)
        if mapping is not None:
            self.mapping = dict(mapping)
            self._store()
        before = self.mapping
        self.mapping = dict(self.maps.get(self.file, {})) if self.file else {}
        self._key = None  # the choices are rebuilt for this file's columns
        self._sync_combos()
        self._show_summary()
        return before != self.mapping

    def reset(self) -> None:
        """Forget this file's mapping and format (detection again)."""
        if self.mapping or self.file_format() != "auto":
            self.mapping = {}
            self.set_format(None)
            self._store()
            self._sync_combos()
            self._show_summary()
            self.sig_reset.emit()
            self.sig_changed.emit()

    # -- the combos --------------------------------------------------------------------------
    def set_choices(self, roles, columns) -> None:
        key = (tuple(roles), tuple(columns))
        if key == self._key:
            return
        self._key = key
        while self.form.rowCount():
            self.form.removeRow(0)
        self.combos.clear()
        self.note = muted("")
        if not columns:
            self.note.setText("Open a file to map its columns.")
            self.form.addRow(self.note)
            return
        for role in roles:
            combo = compact(QComboBox())
            combo.addItem(AUTO_COLUMN, None)
            for c in columns:
                combo.addItem(c, c)
            combo.currentIndexChanged.connect(self._changed)
            self.form.addRow(role + ":", combo)
            self.combos[role] = combo
        self._sync_combos()

    def _sync_combos(self) -> None:
        for role, combo in self.combos.items():
            combo.blockSignals(True)
            want = self.mapping.get(role)
            i = combo.findData(want)
            if want is not None and i < 0:  # a column this file lacks stays visible, to be fixed
                combo.addItem(f"{want} (not in this file)", want)
                i = combo.count() - 1
            combo.setCurrentIndex(max(i, 0))
            combo.blockSignals(False)

    def _changed(self):
        chosen = {r: c.currentData() for r, c in self.combos.items() if c.currentData() is not None}
        # roles this file's format does not show keep what the user mapped for them
        self.mapping = {**{r: c for r, c in self.mapping.items() if r not in self.combos}, **chosen}
        self._store()
        self._show_summary()
        self.sig_changed.emit()

    def set_mapping(self, mapping: dict) -> None:
        """The current file's mapping (a run file's ``data.columns``)."""
        self.mapping = dict(mapping or {})
        self._store()
        self._sync_combos()
        self._show_summary()

    def _show_summary(self) -> None:
        if self.mapping:
            pairs = ", ".join(f"{role} ← {col}" for role, col in self.mapping.items())
            name = Path(self.file).name if self.file else "this file"
            self.summary.setText(f"Mapped for {name}: <b>{html.escape(pairs)}</b>")
        else:
            self.summary.setText("No mapping: the columns are detected.")
        self.reset_btn.setEnabled(bool(self.mapping) or self.file_format() != "auto")

    def describe(self) -> str:
        """The mapping in words, for tests and messages: ``output ← answer`` ('' for none)."""
        return ", ".join(f"{role} ← {col}" for role, col in self.mapping.items())


class LengthHistogram(QWidget):
    """Token lengths with the max_length line and how many examples it would cut."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.slot = PlotSlot()
        lay.addWidget(self.slot, 1)
        self.summary = QLabel("")
        self.summary.setObjectName("truncation-summary")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.plot = self.bars = self.line = None
        self.lengths = []  # a numpy array once there are lengths (numpy loads after the window)
        self.max_length = 512
        self.drop = False

    def build_plots(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        from studio.plots import ThemedPlot

        self.plot = ThemedPlot("Tokens per example")
        self.plot.setLabel("bottom", "tokens")
        self.plot.setLabel("left", "examples")
        self.plot.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=theme.SERIES["hist"], pen=None)
        self.plot.addItem(self.bars)
        self.line = pg.InfiniteLine(angle=90, movable=False,
                                    pen=pg.mkPen(theme.SERIES["limit"], width=2, style=Qt.PenStyle.DashLine),
                                    label=control_label("data.max_length"), labelOpts={"position": 0.9, "color": theme.SERIES["limit"]})
        self.plot.addItem(self.line)
        self.slot.fill(self.plot)
        self.set_lengths(self.lengths)

    def set_lengths(self, lengths) -> None:
        self.lengths = np.asarray(lengths, dtype=float)
        if self.bars is not None:
            if len(self.lengths):
                hi = max(self.lengths.max(), 1)
                bins = min(40, max(5, int(np.sqrt(len(self.lengths)))))
                edges = np.histogram_bin_edges(self.lengths, bins=bins, range=(0, hi))
                counts, _ = np.histogram(self.lengths, bins=edges)
                self.bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
            else:
                self.bars.setOpts(x0=[], x1=[], height=[])
        self._update()

    def set_limit(self, max_length: int, drop: bool) -> None:
        self.max_length, self.drop = max_length, drop
        self._update()

    def truncated(self) -> int:
        if not len(self.lengths):
            return 0
        return int((self.lengths > self.max_length).sum())

    def _update(self):
        n = len(self.lengths)
        if self.line is not None:
            self.line.setValue(self.max_length)
        if not n:
            self.summary.setText("")
            self._fit_summary()
            return
        cut = self.truncated()
        # the window's words for the controls (studio/wording.py), never the run-file keys
        limit = f"{control_name('data.max_length')} {self.max_length}"
        verb = f"dropped ({control_name('data.drop_long')} is ticked)" if self.drop else "truncated"
        median, longest = int(np.median(self.lengths)), int(self.lengths.max())
        if cut:
            self.summary.setText(f"<b>{cut} of {n}</b> examples ({100 * cut / n:.1f} %) are longer than "
                                 f"{html.escape(limit)} and will be {html.escape(verb)}. "
                                 f"Median {median} tokens, longest {longest}.")
        else:
            self.summary.setText(f"All {n} examples fit in {html.escape(limit)}. "
                                 f"Median {median} tokens, longest {longest}.")
        if self.plot is not None:
            # keep the line in view even when every example is far shorter
            self.plot.setXRange(0, max(longest, self.max_length) * 1.05, padding=0)
        self._fit_summary()

    def _fit_summary(self) -> None:
        # A wrapped label's minimum is one line: a squeezed pane laid the two-line summary out one
        # line tall and its centred text was drawn over the plot's axis label. Its minimum is the
        # height its text needs at this width.
        w = self.summary.width() or self.width()
        self.summary.setMinimumHeight(self.summary.heightForWidth(w) if self.summary.text() and w > 0 else 0)

    def resizeEvent(self, e):
        super().resizeEvent(e)
        self._fit_summary()


def rejection_key(d: dict, task: str = "sft") -> tuple:
    """The settings a preview's verdict on the file depends on (not max_length, the split…): the
    data's, and ``train.task`` (a preference file is refused for sft and is the data for dpo)."""
    return (str(d.get("path") or "").strip(), json.dumps(d.get("columns") or {}, sort_keys=True),
            d.get("format"), bool(d.get("skip_bad_lines")), d.get("validation_path"), task)


def base_field(path: str | None) -> str:
    """``data.columns.prompt`` → ``data.columns``."""
    return ".".join(path.split(".")[:2]) if path else ""


class DataPanel(QWidget, PanelDefaults):
    key, title, area = "data", "Data", Area.CENTRAL
    sig_changed = Signal()

    @classmethod
    def create(cls, studio: Studio) -> DataPanel:
        panel = cls(studio.settings)
        studio.config.sig_config.connect(panel.update_preview)
        panel.set_elsewhere = studio.set_control   # the report's fixes of other panels' settings (train.task)
        return panel

    def plot_steps(self) -> list:
        return [self.histogram.build_plots]

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.preview = Preview()
        self._model = ("demo", False, True)
        self.set_elsewhere = lambda path, value: False   # Studio.set_control once created
        self._request_key = None
        self._requested_data: tuple | None = None   # rejection_key of the preview asked for last
        self._task = "sft"                          # train.task of the config last seen
        self.preview_key: tuple | None = None       # rejection_key of the preview shown
        # The preview refused the data: (rejection_key, path, message). It gates Start while the
        # data settings are the ones it was found for.
        self._rejection: tuple[tuple, str, str] | None = None

        left = QWidget()
        ll = QVBoxLayout(left)
        file_box = QGroupBox("Data file")
        fl = QVBoxLayout(file_box)
        row = QHBoxLayout()
        self.path = QLineEdit()
        self.path.setObjectName("field:data.path")
        self.path.setToolTip(DataConfig.__dataclass_fields__["path"].metadata["help"])
        self.path.textChanged.connect(self._path_changed)
        row.addWidget(self.path, 1)
        open_btn = QPushButton("Open…")
        open_btn.clicked.connect(self.browse)
        row.addWidget(open_btn)
        fl.addLayout(row)
        self.path_error = QLabel()
        self.path_error.setWordWrap(True)
        self.path_error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.path_error.hide()
        fl.addWidget(self.path_error)
        self.counts = muted("")
        fl.addWidget(self.counts)
        ll.addWidget(file_box)

        fmt_box = QGroupBox("Format")
        fml = QVBoxLayout(fmt_box)
        self.detected = QLabel("—")
        self.detected.setObjectName("detected-format")
        self.detected.setWordWrap(True)
        self.detected.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        fml.addWidget(self.detected)
        fml.addWidget(heading("Column mapping"))
        self.mapping = ColumnMapping(settings)
        self.mapping.sig_changed.connect(self._changed)
        self.mapping.sig_reset.connect(lambda: self._show_format("auto"))
        fml.addWidget(self.mapping)
        ll.addWidget(fmt_box)

        opt_box = QGroupBox("Options")
        self.form = DataclassForm(DataConfig, "data", exclude=("path", "columns"))
        self.form.sig_changed.connect(self._form_changed)
        QVBoxLayout(opt_box).addWidget(self.form)
        ll.addWidget(opt_box)
        ll.addStretch(1)

        right = QSplitter(Qt.Orientation.Vertical)
        table_box = QWidget()
        tl = QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(heading("Examples as the model sees them"))
        head.addStretch(1)
        self.legend = QLabel()
        head.addWidget(self.legend)
        tl.addLayout(head)
        self.status = muted("")
        self.status.setObjectName("data-status")
        tl.addWidget(self.status)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Tokens", "Rendered example (chat template applied)"])
        self.table.verticalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        self.table.setItemDelegateForColumn(TEXT_COL, HtmlDelegate(self.table))
        self.table.setWordWrap(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(TEXT_COL, QHeaderView.ResizeMode.Stretch)
        hh.sectionResized.connect(lambda *_: self.table.resizeRowsToContents())
        tl.addWidget(self.table, 1)
        # The examples and the engine's report (studio/data_report_view.py) share the space.
        self.report, tabs = report_tabs(table_box, self)
        right.addWidget(tabs)
        self.histogram = LengthHistogram()
        right.addWidget(self.histogram)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)

        split = QSplitter(Qt.Orientation.Horizontal)
        left_scroll = scroll(left)
        left_scroll.setMinimumWidth(250)
        split.addWidget(left_scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([290, 900])
        outer = scrolled_body(self, 4)
        outer.addWidget(split)

        self._job = LatestJob("preview", delay_ms=350, parent=self, lane="data")
        self._job.sig_started.connect(lambda: self.status.setText("Reading and tokenizing…"))
        self._job.sig_result.connect(self._on_preview)
        self._job.sig_error.connect(self._on_preview_error)
        self._update_legend()

    # -- config ------------------------------------------------------------------------------
    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["path"] = self.path.text().strip()
        vals["columns"] = dict(self.mapping.mapping)
        if self._rejection is not None and self._rejection[0] == rejection_key(vals, self._task):
            errors.setdefault(self._rejection[1], self._rejection[2])
        lengths = self.preview.lengths if self.preview_key == rejection_key(vals, self._task) else []
        limit = vals.get("max_length")
        if lengths and vals.get("drop_long") and isinstance(limit, int) and min(lengths) > limit:
            # the engine would drop every example and fail: the window already knows
            errors.setdefault("data.max_length", f"every example is longer than {limit} tokens (the shortest has "
                              f"{min(lengths)}), and “Drop long” drops them all: raise it, or untick “Drop long”.")
        return vals, errors

    def set_values(self, data_cfg: DataConfig) -> None:
        self.path.blockSignals(True)
        self.path.setText(data_cfg.path)
        self.path.blockSignals(False)
        # the run file's mapping and format are that file's
        self.mapping.set_file(data_cfg.path, mapping=data_cfg.columns, fmt=data_cfg.format)
        self.form.set_values(data_cfg)  # emits sig_changed once

    def set_errors(self, errors: dict) -> None:
        self.form.set_errors(errors)
        msg = errors.get("data.path") or errors.get("data.columns")
        self.path_error.setText(msg or "")
        self.path_error.setVisible(bool(msg))

    def set_warnings(self, warnings: dict) -> None:
        self.form.set_warnings(warnings)

    def _path_changed(self, text: str) -> None:
        # another file: its own mapping and format (none and auto, usually), never the last file's
        self.mapping.set_file(text.strip())
        self._show_format(self.mapping.file_format())
        self._changed()

    def _show_format(self, fmt: str) -> None:
        editor = self.form.editors["format"]
        if editor.raw() != fmt:
            editor.widget.blockSignals(True)
            editor.set_value(fmt)
            editor.widget.blockSignals(False)
            self._changed()

    def _form_changed(self) -> None:
        self.mapping.set_format(self.form.editors["format"].raw())
        self._changed()

    def browse(self):
        start = self.settings.get("last/data_dir") if self.settings else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open training data", start, data_file_filter())
        if path:
            if self.settings:
                self.settings.set("last/data_dir", str(Path(path).parent))
            self.path.setText(path)

    def _changed(self, *_):
        self.sig_changed.emit()

    # -- preview -----------------------------------------------------------------------------
    def update_preview(self, cfg) -> None:
        """Called with the whole RunConfig on every change; re-reads only when it matters."""
        if cfg is None:
            return
        d = cfg.data
        self.histogram.set_limit(d.max_length, d.drop_long)
        model = (cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
        # The task decides how the file is read (SFT examples or preference pairs): a switch to
        # dpo must re-read a preference file the sft preview refused, and back.
        self._task = cfg.train.task
        # max_length / drop_long only move the histogram's line; everything else re-renders.
        data_key = replace(d, max_length=0, drop_long=False, validation_split=0.0, max_examples=-1)
        key = (repr(data_key), model, self._task)
        if key != self._request_key and d.path:
            self._request_key = key
            self._requested_data = rejection_key(asdict(d), self._task)
            self._job.request(cfg.to_dict())
        report_key = (repr(d), model, self._task)
        if report_key != getattr(self, "_report_key", None) and (d.path or d.sources):
            self._report_key = report_key
            self.report.request(cfg.to_dict(), self.values()[0])

    def apply_fix(self, path: str, value) -> None:
        """A one-click fix from the report: set the control for ``path`` to ``value``."""
        apply_fix(self, path, value)

    def _set_rejection(self, field_path: str | None, message: str = "") -> None:
        new = (self._requested_data, field_path, message) if field_path else None
        if new != self._rejection:
            self._rejection = new
            self.sig_changed.emit()  # Start's gate follows

    def _on_preview(self, result: dict):
        self.preview = p = Preview(**result)
        self.preview_key = self._requested_data  # which data settings this preview is of
        if p.rejected:
            # the message names controls, not run-file keys; a mapping problem points at the mapping.
            # Start's reason and the status line name that control before the message already:
            # "train.jsonl field data.columns: …" is said "train.jsonl: …" after it.
            text = p.error
            if p.error_field.startswith("data."):
                text = text.replace(f" field {p.error_field}: ", ": ", 1)
            self._set_rejection(base_field(p.error_field) or "data.path", window_text(text))
        else:
            self._set_rejection(None)
            self.sig_changed.emit()  # the lengths may gate Start (everything dropped as too long)
        known = format_roles()
        roles = known.get(self.form.editors["format"].raw()) or known.get(p.format)
        if roles is None:
            roles = tuple(dict.fromkeys(r for rs in known.values() for r in rs))
        self.mapping.set_choices(roles, p.columns)
        if p.format:
            self.detected.setText(f"<b>{p.format}</b> — {html.escape(window_text(p.reason))}")
        else:
            self.detected.setText("not detected")
        parts = [f"{p.n_train:,} training examples"] if p.format else []
        if p.n_validation:
            parts.append(f"{p.n_validation:,} validation")
        if p.n_skipped:
            parts.append(f"{p.n_skipped:,} skipped")
        self.counts.setText(" · ".join(parts))
        if p.rejected:
            status = ["This file cannot be trained on as it is: fix what is marked on the left "
                      "(Start stays off until then)."]
        else:
            status = [window_text(p.error)] if p.error else []
        status += [window_text(w) for w in p.warnings]
        self.status.setText("\n".join(status))
        self.status.setStyleSheet(f"color: {ERROR_COLOR};" if p.error else "")
        if p.partial and not p.error:  # a large file: only its first records were read
            self.counts.setText(f"first {len(p.rows)} examples shown; the Report tab counts every record")
            self.status.setText(f"Showing the first {len(p.rows)} examples of a large file; the Report tab reads "
                                f"all of it in the background.")
        if not p.error and p.n_train > len(p.rows):
            self.status.setText(f"Showing the first {len(p.rows)} of {p.n_train:,} examples." +
                                ("\n" + "\n".join(window_text(w) for w in p.warnings) if p.warnings else ""))
        self._fill_table()
        self.histogram.set_lengths(p.lengths)

    def _on_preview_error(self, exc):
        self.preview = Preview(error=window_message(exc))
        self.preview_key = self._requested_data
        self.status.setText(self.preview.error)
        if is_user_error(exc):
            self._set_rejection(base_field(getattr(exc, "field", "")) or "data.path", self.preview.error)
        self.table.setRowCount(0)
        self.histogram.set_lengths([])

    def previewing(self, path: str) -> bool:
        """Whether the preview shown is of ``path`` with the current settings (tests, the walk)."""
        vals, _ = self.values()
        return self.preview_key is not None and self.preview_key == rejection_key(vals, self._task) and \
            self.preview_key[0] == str(path) and not self._job.busy

    def _fill_table(self):
        p = self.preview
        bg = theme.trained_background(self).name()
        fg = theme.muted_text(self).name()
        self.table.setRowCount(len(p.rows))
        for i, segs in enumerate(p.rows):
            n = p.lengths[i] if i < len(p.lengths) else None
            tokens = QTableWidgetItem("" if n is None else str(n))
            tokens.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
            self.table.setItem(i, 0, tokens)
            text = QTableWidgetItem()
            text.setData(HTML_ROLE, segments_html(segs, bg, fg))
            text.setData(Qt.ItemDataRole.UserRole, segs)
            text.setToolTip("Tinted: tokens the loss is computed on. Dimmed: prompt tokens (masked).")
            self.table.setItem(i, TEXT_COL, text)
        self.table.resizeRowsToContents()

    def _update_legend(self):
        bg = theme.trained_background(self).name()
        fg = theme.muted_text(self).name()
        self.legend.setText(f'<span style="background-color:{bg}">&nbsp;trained (loss)&nbsp;</span>'
                            f'&nbsp;&nbsp;<span style="color:{fg}">masked prompt</span>')

    def resizeEvent(self, e):
        super().resizeEvent(e)
        self.table.resizeRowsToContents()  # word-wrapped cells change height with the width

    def changeEvent(self, e):
        if e.type() == QEvent.Type.PaletteChange:
            self._update_legend()
            self._fill_table()
        super().changeEvent(e)
