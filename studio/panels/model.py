"""Model panel: choose the base model (demo, folder, HF cache, .gguf) and see what it is."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import ModelConfig
from studio import fact_cache
from studio.forms import ERROR_COLOR, DataclassForm
from studio.messages import is_user_error, window_message
from studio.panels.base import Area, PanelDefaults, Studio
from studio.tasks import LatestJob, start_job
from studio.widgets import InfoGrid, compact, fmt_count, muted

DEMO_LABEL = "demo"
INFO_KEYS = ["Architecture", "Parameters", "Context length", "Weights dtype", "Chat template", "Source"]


class ModelPanel(QWidget, PanelDefaults):
    key, title, area = "model", "Model", Area.LEFT
    sig_changed = Signal()
    sig_model_info = Signal(object)  # inspect_model's dict, or None while unknown / on error

    @classmethod
    def create(cls, studio: Studio) -> ModelPanel:
        panel = cls(studio.settings)
        panel.sig_model_info.connect(studio.bus.sig_model_info)
        panel.sig_model_info.connect(studio.config.set_model_info)
        return panel

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.info: dict | None = None
        self.cached = False   # the facts shown are the last launch's (fact_cache), not yet re-checked
        lay = QVBoxLayout(self)

        src = QGroupBox("Base model")
        sl = QVBoxLayout(src)
        self.source = compact(QComboBox(), 12)
        self.source.setEditable(True)
        self.source.setObjectName("field:model.name_or_path")
        self.source.addItem(DEMO_LABEL)
        self.source.setToolTip(ModelConfig.__dataclass_fields__["name_or_path"].metadata["help"])
        self.source.lineEdit().setPlaceholderText("demo, a folder, a .gguf file or a hub id")
        self.source.currentTextChanged.connect(self._source_changed)
        sl.addWidget(self.source)
        buttons = QHBoxLayout()
        folder = QPushButton("Folder…")
        folder.setToolTip("A local model folder with config.json and weights")
        folder.clicked.connect(self.browse_folder)
        gguf = QPushButton("GGUF file…")
        gguf.setToolTip("A .gguf file (dequantized on load)")
        gguf.clicked.connect(self.browse_gguf)
        demo = QPushButton("Demo")
        demo.setToolTip("The bundled SmolLM2-135M-Instruct: small enough to fine-tune on a CPU")
        demo.clicked.connect(lambda: self.source.setCurrentText(DEMO_LABEL))
        for b in (demo, folder, gguf):
            buttons.addWidget(b)
        buttons.addStretch(1)
        sl.addLayout(buttons)
        self.source_error = QLabel()
        self.source_error.setWordWrap(True)
        self.source_error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.source_error.hide()
        sl.addWidget(self.source_error)
        lay.addWidget(src)

        self.form = DataclassForm(ModelConfig, "model", exclude=("name_or_path",))
        self.form.sig_changed.connect(self._form_changed)
        opts = QGroupBox("Loading")
        QVBoxLayout(opts).addWidget(self.form)
        lay.addWidget(opts)

        info_box = QGroupBox("About this model")
        il = QVBoxLayout(info_box)
        self.grid = InfoGrid(INFO_KEYS)
        il.addWidget(self.grid)
        self.status = muted("")
        il.addWidget(self.status)
        lay.addWidget(info_box)
        lay.addStretch(1)

        self._inspect_job = LatestJob("inspect", delay_ms=300, parent=self)
        self._inspect_job.sig_started.connect(lambda: self.info is None and self._set_status("Inspecting…"))
        self._inspect_job.sig_result.connect(self._on_info)
        self._inspect_job.sig_error.connect(self._on_info_error)
        self._last_key = None
        # What the last inspection found wrong with the model (it cannot be found, it has no
        # weights), for the key it was found for: it gates Start until the model changes.
        self._problem: tuple[tuple, str] | None = None
        self._cached = start_job("cached_models", parent=self)
        self._cached.sig_result.connect(self._on_cached)

    # -- config ------------------------------------------------------------------------------
    def values(self) -> tuple[dict, dict]:
        vals, errors = self.form.values()
        vals["name_or_path"] = self.source.currentText().strip()
        if self._problem is not None and self._problem[0] == self._key(vals):
            errors["model.name_or_path"] = self._problem[1]
        return vals, errors

    @staticmethod
    def _key(vals: dict) -> tuple:
        return (vals.get("name_or_path", ""), bool(vals.get("trust_remote_code")), bool(vals.get("offline", True)))

    def set_values(self, model_cfg: ModelConfig) -> None:
        self.source.blockSignals(True)
        self.source.setCurrentText(model_cfg.name_or_path)
        self.source.blockSignals(False)
        self.form.set_values(model_cfg)
        self._maybe_inspect()

    def set_errors(self, errors: dict) -> None:
        self.form.set_errors(errors)
        msg = errors.get("model.name_or_path")
        self.source_error.setText(msg or "")
        self.source_error.setVisible(bool(msg))

    def set_warnings(self, warnings: dict) -> None:
        self.form.set_warnings(warnings)

    # -- browsing ----------------------------------------------------------------------------
    def _start_dir(self) -> str:
        return self.settings.get("last/model_dir") if self.settings else ""

    def browse_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder", self._start_dir())
        if path:
            self._chose(path, Path(path).parent)

    def browse_gguf(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF file", self._start_dir(), "GGUF (*.gguf)")
        if path:
            self._chose(path, Path(path).parent)

    def _chose(self, path: str, folder: Path):
        if self.settings:
            self.settings.set("last/model_dir", str(folder))
        if self.source.findText(path) < 0:
            self.source.addItem(path)
        self.source.setCurrentText(path)

    def _on_cached(self, ids: list[str]):
        for hub_id in ids:
            if self.source.findText(hub_id) < 0:
                self.source.addItem(hub_id)

    # -- inspection --------------------------------------------------------------------------
    def _source_changed(self, _text):
        self.sig_changed.emit()
        self._maybe_inspect()

    def _form_changed(self):
        self.sig_changed.emit()
        self._maybe_inspect()

    def _maybe_inspect(self):
        vals, _ = self.values()
        key = self._key(vals)
        if key == self._last_key or not key[0]:
            return
        self._last_key = key
        self.info = None
        self.grid.clear()
        self.sig_model_info.emit(None)
        cached = fact_cache.shared().get("inspect", list(key))
        if cached is not None:
            # the facts from the last launch, at once; the helper's answer replaces them
            self._on_info(cached, cached=True)
        self._inspect_job.request(*key)

    def _set_status(self, text: str):
        self.status.setText(text)

    def _on_info(self, info: dict, cached: bool = False):
        self.info = info
        self.cached = cached
        if not cached and self._last_key is not None:
            fact_cache.shared().put("inspect", list(self._last_key), info)
        self.grid.set("Architecture", f"{info.get('architecture')} ({info.get('model_type')})")
        layers = info.get("num_layers")
        extra = f" · {layers} layers, hidden {info.get('hidden_size')}" if layers else ""
        self.grid.set("Parameters", fmt_count(info.get("total_params")) + extra)
        ctx = info.get("context_length")
        self.grid.set("Context length", f"{ctx:,} tokens" if ctx else "unknown")
        self.grid.set("Weights dtype", str(info.get("dtype")))
        self.grid.set("Chat template", "yes" if info.get("has_chat_template") else
                      "no — examples are rendered as plain text")
        self.grid.set("Source", str(info.get("display") or info.get("source")))
        no_weights = "this folder has a config but no weights: it can be inspected, not trained"
        has_weights = info.get("has_weights", True)
        self.status.setText(("" if has_weights else no_weights[:1].upper() + no_weights[1:] + ".")
                            + (" (Cached from the last launch; checking again…)" if cached else ""))
        self._set_problem(None if has_weights else no_weights)
        self.sig_model_info.emit(info)

    def _on_info_error(self, exc: BaseException):
        self.info = None
        self.cached = False
        self.grid.clear()
        self.status.setText(window_message(exc))
        # Only the user's mistakes gate Start (a missing model, a bad folder); a fault of ours
        # (the ML libraries failed to load) is shown, and the engine decides at Start.
        self._set_problem(window_message(exc) if is_user_error(exc) else None)
        self.sig_model_info.emit(None)

    def _set_problem(self, message: str | None) -> None:
        self._problem = (self._last_key, message) if message else None
        self.sig_changed.emit()
