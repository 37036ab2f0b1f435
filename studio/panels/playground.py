"""Playground tab: one prompt, two models side by side (base vs tuned, or checkpoint vs checkpoint).

Generation is a task in the "playground" helper process (studio/tasks.py), which keeps the model
loaded between prompts; tokens stream back as partial results and into the two panes, so the UI
thread never waits on a model nor shares its GIL with one. The two sides are generated one after
the other on one shared copy of the base weights, with the same prompt, settings and seed; the
engine makes the ``base`` side truly adapter-free.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.forms import ERROR_COLOR
from studio.messages import window_message
from studio.panels.base import Area, PanelDefaults, Studio
from studio.picker import RunPicker, follow_runs
from studio.tasks import Task, start_job
from studio.widgets import CheckedDoubleSpinBox, CheckedSpinBox, compact, scrolled_body

BASE = "base"  # engine.playground.BASE, repeated so that importing this tab stays Qt-only


def _signature(info) -> list:
    """Which adapters a run has and when each was written."""
    out = []
    for label, path in info.sources():
        f = path / "adapter_model.safetensors"
        out.append([label, f.stat().st_mtime_ns if f.exists() else 0])
    return out


class PlaygroundPanel(QWidget, PanelDefaults):
    key, title, area = "playground", "Playground", Area.CENTRAL
    sig_generation_started = Signal()
    sig_generation_finished = Signal()
    sig_error = Signal(str)
    sig_piece = Signal(int, str)     # side (0 left, 1 right), a piece of generated text

    @classmethod
    def create(cls, studio: Studio) -> PlaygroundPanel:
        panel = cls()
        follow_runs(panel, studio)  # a finished run's outputs become choices (a new adapter reloads)
        return panel

    def __init__(self, parent=None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.task: Task | None = None
        self._busy_ui = False
        self._signature: list = []
        self._loaded_key: list | None = None   # [run_dir, signature] the helper holds loaded, as far as we know
        self._extra: dict[str, str] = {}        # other runs' adapters offered as sources: label → folder
        self._picked = False                    # the user chose a run here: stop following the Monitor
        self.sig_piece.connect(self._on_piece)
        self._build()
        self._set_busy(False)
        self._update_enabled()

    # ---- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = scrolled_body(self)
        self.picker = RunPicker("Run to try:")
        self.picker.setToolTip("Any run in the Runs tab. Each side below can be the base model, this run's "
                               "final adapter or a checkpoint, or another run's adapter on the same base.")
        self.picker.combo.activated.connect(lambda _i: setattr(self, "_picked", True))
        self.picker.sig_run.connect(self.set_run_dir)
        lay.addWidget(self.picker)
        self.run_label = QLabel("No run selected: finish or open a run to try it here.")
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.run_label)

        prompt_box = QGroupBox("Prompt")
        pl = QVBoxLayout(prompt_box)
        self.system = QLineEdit()
        self.system.setPlaceholderText("System message (optional)")
        pl.addWidget(self.system)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Ask something. The prompt goes through the model's chat template.")
        self.prompt.setMaximumHeight(110)
        pl.addWidget(self.prompt)

        settings = QHBoxLayout()
        form = QFormLayout()
        # out-of-range input is marked and blocks Generate, never quietly changed
        self.max_new_tokens = CheckedSpinBox(1, 8192, "Max new tokens")
        self.max_new_tokens.setValue(128)
        self.max_new_tokens.setToolTip("The most tokens each side may generate.")
        self.temperature = CheckedDoubleSpinBox(0.0, 2.0, "Temperature")
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(0.0)
        self.temperature.setToolTip("0 = greedy (deterministic). Higher values sample more freely.")
        self.top_p = CheckedDoubleSpinBox(0.01, 1.0, "Top-p")
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(0.9)
        self.top_p.setToolTip("Nucleus sampling: keep the smallest set of tokens with this much probability "
                              "(used when temperature > 0).")
        self.seed = CheckedSpinBox(0, 2**31 - 1, "Seed")
        self.seed.setToolTip("Both sides sample with this seed, so differences come from the models.")
        for w in (self.max_new_tokens, self.temperature, self.top_p, self.seed):
            w.valueChanged.connect(self._update_enabled)
        # two rows of two: the four settings fit a narrow window
        for pair in ((("Max new tokens", self.max_new_tokens), ("Temperature", self.temperature)),
                     (("Top-p", self.top_p), ("Seed", self.seed))):
            row = QHBoxLayout()
            for label, w in pair:
                row.addWidget(QLabel(label))
                row.addWidget(w)
            row.addStretch(1)
            form.addRow(row)
        settings.addLayout(form, 1)
        self.generate_btn = QPushButton("Generate")
        self.generate_btn.setDefault(True)
        self.generate_btn.clicked.connect(self.generate)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.clicked.connect(self.stop)
        settings.addWidget(self.generate_btn)
        settings.addWidget(self.stop_btn)
        pl.addLayout(settings)
        lay.addWidget(prompt_box)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.source_combos: list[QComboBox] = []
        self.outputs: list[QPlainTextEdit] = []
        for side in range(2):
            w = QWidget()
            v = QVBoxLayout(w)
            v.setContentsMargins(0, 0, 0, 0)
            combo = compact(QComboBox(), 8)
            combo.setObjectName(f"playground.source{side}")
            combo.setToolTip("base = the base model with no adapter; final = the run's adapter; "
                             "checkpoint-N = an intermediate adapter; <run>: final = another run's adapter "
                             "on the same base")
            combo.currentTextChanged.connect(self._update_enabled)
            out = QPlainTextEdit()
            out.setReadOnly(True)
            out.setObjectName(f"playground.output{side}")
            v.addWidget(combo)
            v.addWidget(out, 1)
            split.addWidget(w)
            self.source_combos.append(combo)
            self.outputs.append(out)
        lay.addWidget(split, 1)

        self.status = QLabel()
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error.hide()
        lay.addWidget(self.error)

    # ---- run selection --------------------------------------------------------------------------
    def follow(self, path) -> None:
        """A run finished: show it (unless the user picked another run here), refreshing its sources."""
        if not path:
            return
        if not self._picked or (self.run_dir is not None and Path(path) == self.run_dir):
            self.picker.follow(str(path))

    def follow_shown(self, path) -> None:
        """The Monitor shows another run: follow it until the user picks one here."""
        if path and not self._picked and Path(path).exists() and (Path(path) / "adapter").exists():
            self.picker.follow(str(path))

    def set_run_dir(self, path) -> None:
        """Show a run (its final adapter and checkpoints become choosable sources)."""
        if not path:
            return
        from engine.export.runinfo import load_run

        # A generation in progress is stopped only when what it uses changes (another run, new
        # adapters on disk, other runs' adapters): the picker re-announces the same run as it
        # refreshes, and that must not stop the user's generation.
        p = Path(path)
        self._show_error("")
        try:
            info = load_run(p)
        except Exception as e:  # noqa: BLE001 - a bad folder is a message, not a crash
            self.stop()
            self.run_dir = None
            self._drop_playground()
            self._fill_sources([])
            self.run_label.setText(f"Run: {p}")
            self._show_error(window_message(e))
            self._update_enabled()
            return
        signature = _signature(info)
        if self.run_dir != p or signature != self._signature:
            # Another run, or this run saved new adapters: release the loaded model; the next
            # Generate loads what is on disk now.
            self.stop()
            self._drop_playground()
        self._signature = signature
        self.run_dir = p
        labels = [lab for lab, _ in info.sources()]
        from studio.picker import other_run_label

        # other runs' final adapters on the same base (same model, same method) are offered too
        extra = {other_run_label(r): str(Path(r["run_dir"]) / "adapter") for r in self.picker.others_on_same_base(str(p))}
        if extra != self._extra:
            self.stop()
            self._drop_playground()
        self._extra = extra
        self._fill_sources(labels + list(extra))
        method = info.method.title if not info.is_bare_adapter else info.config.method.name
        self.run_label.setText(f"Run: {p}  ·  {method} on {info.config.model.name_or_path}")
        if not labels:
            self._show_error("This run has no adapter yet: it saves one when it finishes (or at each "
                             "checkpoint when train.save_steps is set).")
        self._update_enabled()

    def set_adapter(self, path) -> None:
        """The run saved a new adapter: refresh the sources (keeps the current choices)."""
        if self.run_dir is not None:
            self.set_run_dir(self.run_dir)

    def choose(self, left: str, right: str) -> None:
        """Pick the two sides' sources (base, final, checkpoint-N, another run's label)."""
        for combo, label in zip(self.source_combos, (left, right)):
            i = combo.findText(label)
            if i >= 0:
                combo.setCurrentIndex(i)
        self._update_enabled()

    def _fill_sources(self, labels: list[str]) -> None:
        items = [BASE] + labels if labels else []
        defaults = [BASE, labels[0] if labels else ""]
        for combo, default in zip(self.source_combos, defaults):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            combo.setCurrentText(current if current in items else default)
            combo.blockSignals(False)

    def _drop_playground(self) -> None:
        self._loaded_key = None  # the next Generate sends a new key: the helper loads what is on disk now

    # ---- generation -----------------------------------------------------------------------------
    def settings(self) -> dict:
        """engine.inference.GenerationSettings' fields, as they cross to the helper."""
        return dict(max_new_tokens=self.max_new_tokens.value(), temperature=self.temperature.value(),
                    top_p=self.top_p.value(), seed=self.seed.value())

    def messages(self) -> list[dict]:
        msgs = []
        if self.system.text().strip():
            msgs.append({"role": "system", "content": self.system.text().strip()})
        msgs.append({"role": "user", "content": self.prompt.toPlainText().strip()})
        return msgs

    @property
    def busy(self) -> bool:
        # Cleared by the finished/failed slots, so the UI state follows the signals it has processed.
        return self._busy_ui

    @Slot()
    def generate(self) -> None:
        if self.busy or self.run_dir is None:
            return
        if not self.prompt.toPlainText().strip():
            self._show_error("Type a prompt first.")
            return
        self._show_error("")
        sources = [c.currentText() for c in self.source_combos]
        for out in self.outputs:
            out.clear()
        self._set_busy(True)
        self.sig_generation_started.emit()
        key = [str(self.run_dir), self._signature]
        extra = {label: path for label, path in self._extra.items() if label in sources}
        self.task = start_job("generate", *key, sources, self.messages(), self.settings(), extra,
                              lane="playground", parent=self)
        self.task.sig_status.connect(self.status.setText)
        self.task.sig_partial.connect(self._on_partial)
        self.task.sig_result.connect(lambda r, key=key: self._on_finished(key, bool(r.get("stopped"))))
        self.task.sig_error.connect(lambda e: self._on_failed(window_message(e)))

    @Slot()
    def stop(self) -> None:
        if self.task is not None and self.task.running:
            self.task.request_interruption()

    # ---- slots (UI thread) ----------------------------------------------------------------------
    @Slot(object)
    def _on_partial(self, part: dict) -> None:
        side = int(part["side"])
        if part.get("done"):
            if not self.outputs[side].toPlainText().strip():
                self.outputs[side].setPlainText("(no text: the model ended its answer at once)")
        else:
            self.sig_piece.emit(side, part["piece"])

    @Slot(int, str)
    def _on_piece(self, side: int, piece: str) -> None:
        out = self.outputs[side]
        out.moveCursor(QTextCursor.MoveOperation.End)
        out.insertPlainText(piece)
        out.ensureCursorVisible()

    def _on_finished(self, key: list, stopped: bool) -> None:
        self._loaded_key = key
        self.status.setText("Stopped." if stopped else "Done.")
        self._set_busy(False)
        self.sig_generation_finished.emit()

    def _on_failed(self, message: str) -> None:
        self.status.setText("")
        self._show_error(message)
        self._set_busy(False)
        self.sig_error.emit(message)
        self.sig_generation_finished.emit()

    # ---- state ----------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.stop_btn.setEnabled(busy)
        self._busy_ui = busy
        self._update_enabled()

    def _update_enabled(self, *_) -> None:
        ready = self.run_dir is not None and all(c.currentText() for c in self.source_combos)
        problems = [w.problem() for w in (self.max_new_tokens, self.temperature, self.top_p, self.seed)
                    if not w.is_valid()]
        self.generate_btn.setEnabled(ready and not self._busy_ui and not problems)
        self.generate_btn.setToolTip(" ".join(problems) if problems else
                                     "Generate with both sides in turn (same prompt, settings and seed)")

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def shutdown(self) -> None:
        """Drop a generation in progress (the window is closing, or a test ends)."""
        if self.task is not None:
            self.task.cancel()
        self._busy_ui = False
