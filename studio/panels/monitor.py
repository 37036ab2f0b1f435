"""Monitor: live plots of a run (loss, learning rate, grad-norm, tokens/s, memory) and progress.

A preference run (train.task dpo, orpo, kto, simpo) shows TRL's preference metrics in place of
the learning-rate and gradient-norm plots: the chosen and rejected rewards with their margin, and
the reward accuracy (KTO: the KL estimate), from the step events' ``metrics``.

Events only append to arrays; a 10 Hz timer pushes the arrays into curves that were created
once (``setData``), with peak downsampling and clip-to-view, so a 10,000-step run redraws as
cheaply as a 10-step one and a burst of events never blocks the UI.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio import theme
from studio.lazy import np
from studio.logtext import relevant_tail
from studio.panels.base import Area, PanelDefaults, Studio
from studio.series import Series
from studio.tensorboard import TensorBoard
from studio.watch import RunWatch
from studio.widgets import (
    Banner,
    PlotSlot,
    fmt_bytes,
    fmt_count,
    fmt_duration,
    fmt_number,
    muted,
    scrolled_body,
)
from studio.wording import control_label, named_fields, window_text

ANTIALIAS_BELOW = 1500
REFRESH_MS = 20  # five plots in view, in turn: each one 10 times a second
GIB = float(1 << 30)
_PLOT_CURVES = {"loss": ("loss_raw", "loss", "eval"), "lr": ("lr",), "grad": ("grad",), "tps": ("tps",),
                "mem": ("mem", "mem_peak"), "rewards": ("r_chosen", "r_rejected", "r_margin"),
                "pref": ("r_acc", "r_kl")}
PLOTS = {"loss": "Loss", "lr": "Learning rate", "grad": "Gradient norm", "tps": "Tokens / s", "mem": "Memory",
         "rewards": "Rewards", "pref": "Reward accuracy / KL"}
# What a short title means, in the plot's tooltip: a plot is at least as wide as its title, and
# the long titles made a preference run's monitor scroll sideways at 1280×720.
PLOT_HELP = {"rewards": "TRL's rewards: β · log-ratio of the trained model to the reference (the base with the "
                        "adapter disabled) for the chosen and the rejected answers, and their margin.",
             "pref": "Reward accuracy: the share of pairs whose chosen answer gets the higher reward. "
                     "KTO has no pairs: its curve is the KL estimate."}
# What each curve of a plot is, said in the plot's title in the curve's colour (a legend box sat on
# the curve): (series key, colour key, words).
TITLE_KEYS = {"loss": [("loss", "train", "train"), ("eval", "eval", "eval ●")],
              "mem": [("mem", "mem2", "now"), ("mem_peak", "mem", "peak")]}
TITLE_MARGIN_PX = 56  # a plot's left axis (its tick labels and unit) and the frame beside its title
# TRL's log keys (engine/tasks.py) → the monitor's series.
PREFERENCE_SERIES = {"rewards/chosen": "r_chosen", "rewards/rejected": "r_rejected", "rewards/margins": "r_margin",
                     "rewards/accuracies": "r_acc", "kl": "r_kl"}
# Shown in place of each other: the SFT view's plot → the preference view's.
PREFERENCE_SWAP = {"lr": "rewards", "grad": "pref"}
STATE_TEXT = {"idle": "No run yet", "starting": "Starting…", "running": "Running", "stopping": "Stopping…",
              "finished": "Finished", "stopped": "Stopped (adapter saved)", "failed": "Failed"}


class StatTile(QFrame):
    """A small "label over big number" box for the latest values."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(0)
        self.title = muted(title, wrap=False)
        lay.addWidget(self.title)
        self.value = QLabel("—")
        f = self.value.font()
        f.setPointSizeF(f.pointSizeF() * 1.35)
        f.setBold(True)
        self.value.setFont(f)
        lay.addWidget(self.value)

    def set(self, text: str) -> None:
        self.value.setText(text)


class MonitorPanel(QWidget, PanelDefaults):
    key, title, area = "monitor", "Monitor", Area.CENTRAL

    @classmethod
    def create(cls, studio: Studio) -> MonitorPanel:
        panel = cls(studio.settings)
        panel.go_to = studio.go_to
        runs = studio.runs
        runs.sig_run_dir.connect(panel.show_run)
        runs.sig_event.connect(panel.on_event)
        runs.sig_state.connect(panel.set_state)
        runs.sig_failed.connect(panel.show_failure)
        # a run that starts or fails wants to be seen
        runs.sig_started.connect(lambda _run_dir: studio.show_panel(cls.key))
        runs.sig_failed.connect(lambda _info: studio.show_panel(cls.key))
        # The runs overlay (Runs › Overlay in monitor): other runs' curves over this one.
        studio.bus.sig_overlay.connect(panel.overlay)
        studio.bus.sig_overlay.connect(lambda dirs: studio.show_panel(cls.key) if dirs else None)
        return panel

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.go_to = None  # the window's "take me to this control" (studio/controls.py)
        self.series = {k: Series() for k in ("loss", "eval", "lr", "grad", "tps", "mem", "mem_peak",
                                             *PREFERENCE_SERIES.values())}
        self.preference = False  # a preference run: its plots replace lr and grad
        self._dirty = False
        self._manual: set[str] = set()
        self._t_progress = 0.0
        self._tick = 0
        self._pending: set[str] = set()
        self._drawn: dict[str, tuple] = {}  # (points, smoothing) each curve last showed
        self.state = "idle"
        self.total_steps = 0
        self.last_step: dict = {}
        self._t_started: float | None = None
        self._t_last_step: float | None = None
        self._t_last_event: float | None = None
        self._t_end: float | None = None
        self._elapsed_before = 0.0   # training time of the earlier parts of a resumed run (seconds)
        self.run_dir = ""
        # The runs overlay: [{"curve": studio.overlay.load_curves' dict, "series": Series, "items": [...]}]
        self.overlays: list[dict] = []
        self._overlay_task = None

        lay = scrolled_body(self, 6)
        self.banner = Banner()
        lay.addWidget(self.banner)

        head = QHBoxLayout()
        self.state_label = QLabel(STATE_TEXT["idle"])
        self.state_label.setObjectName("run-state")
        f = self.state_label.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.2)
        self.state_label.setFont(f)
        head.addWidget(self.state_label)
        self.run_label = muted("", wrap=False)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long run folder must not widen the tab (it is cut at the window's edge, whole in the tooltip)
        self.run_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        head.addWidget(self.run_label, 1)
        lay.addLayout(head)

        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")  # "%v / %m steps" once the run has said how many it takes
        prog.addWidget(self.progress, 1)
        self.time_label = QLabel("")
        self.time_label.setObjectName("time-label")
        self.time_label.setMinimumWidth(200)
        prog.addWidget(self.time_label)
        lay.addLayout(prog)

        tiles = QHBoxLayout()
        self.tiles = {k: StatTile(t) for k, t in (("loss", "Train loss"), ("eval", "Eval loss"),
                                                  ("lr", "Learning rate"), ("tps", "Tokens / s"),
                                                  ("mem", "Peak memory"), ("epoch", "Epoch"))}
        self.tiles["mem"].setToolTip("The run's peak memory so far: peak RSS of the training process on the "
                                     "CPU, peak reserved by CUDA on a GPU — what the Estimate predicts.")
        for t in self.tiles.values():
            tiles.addWidget(t)
        lay.addLayout(tiles)

        # What the run's own checks found: warnings (marked on the plots at their step) and the
        # forgetting check of the finished run.
        self.watch = RunWatch()
        self.markers: dict[str, list] = {}   # plot key → marker items drawn
        self.warning_label = QLabel("")
        self.warning_label.setObjectName("monitor-warnings")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #c77c02;")
        self.warning_label.hide()
        lay.addWidget(self.warning_label)
        self.forgetting_label = QLabel("")
        self.forgetting_label.setObjectName("monitor-forgetting")
        self.forgetting_label.setWordWrap(True)
        self.forgetting_label.hide()
        lay.addWidget(self.forgetting_label)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Smoothing:"))
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setMaximumWidth(220)
        self.smoothing.setToolTip("Exponential moving average of the training loss (0 = raw)")
        self.smoothing.setValue(settings.get("monitor/smoothing") if settings else 60)
        self.smoothing.valueChanged.connect(self._smoothing_changed)
        self.series["loss"].set_weight(self.smoothing.value() / 100)
        controls.addWidget(self.smoothing)
        self.smoothing_value = QLabel()
        self.smoothing_value.setMinimumWidth(36)
        self.smoothing_value.setText(f"{self.smoothing.value() / 100:.2f}")
        controls.addWidget(self.smoothing_value)
        self.log_scale = QCheckBox("Log-scale loss")
        self.log_scale.setChecked(settings.get("monitor/log_scale") if settings else False)
        self.log_scale.toggled.connect(self._log_scale_changed)
        controls.addSpacing(16)
        controls.addWidget(self.log_scale)
        controls.addStretch(1)
        self.btn_clear_overlay = QPushButton("Clear overlay")
        self.btn_clear_overlay.setObjectName("clear-overlay")
        self.btn_clear_overlay.setToolTip("Remove the other runs' curves (Runs › Overlay in monitor draws them)")
        self.btn_clear_overlay.clicked.connect(lambda: self.set_overlay([]))
        self.btn_clear_overlay.hide()
        controls.addWidget(self.btn_clear_overlay)
        self.tensorboard = TensorBoard(self)
        self.tb_link = QLabel("")
        self.tb_link.setObjectName("tensorboard-url")
        self.tb_link.setOpenExternalLinks(True)
        controls.addWidget(self.tb_link)
        self.btn_tensorboard = QPushButton("TensorBoard")
        self.btn_tensorboard.setObjectName("tensorboard-button")
        self.btn_tensorboard.setToolTip("Start TensorBoard on this run's folder (runs write its files when "
                                        "Training › Report to includes tensorboard)")
        self.btn_tensorboard.setEnabled(False)
        self.btn_tensorboard.clicked.connect(self.start_tensorboard)
        controls.addWidget(self.btn_tensorboard)
        self.tensorboard.sig_url.connect(self._tensorboard_url)
        self.tensorboard.sig_error.connect(lambda msg: self.tb_link.setText(msg))
        lay.addLayout(controls)

        grid = QGridLayout()
        grid.setSpacing(6)
        # small minimums: at 1280×720 all five plots fit without scrolling (they grow with the window)
        self.slots = {k: PlotSlot(min_height=110) for k in PLOTS}
        # the loss across the top, the other four in one row under it: two rows of plots leave each
        # one readable on a 1280×720 screen, where three rows were squeezed flat. A preference run
        # shows its rewards and accuracy in the places of learning rate and gradient norm.
        grid.addWidget(self.slots["loss"], 0, 0, 1, 4)
        for col, key in enumerate(("lr", "grad", "tps", "mem")):
            grid.addWidget(self.slots[key], 1, col)
        grid.addWidget(self.slots["rewards"], 1, 0)
        grid.addWidget(self.slots["pref"], 1, 1)
        self.slots["rewards"].hide()
        self.slots["pref"].hide()
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        lay.addLayout(grid, 1)
        self.plots: dict = {}
        self.curves: dict = {}

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def build_plots(self) -> None:
        """Create every plot and curve now (tests; the window uses plot_steps())."""
        for step in self.plot_steps():
            step()

    def plot_steps(self) -> list:
        """One callable per plot: the window runs them on successive event-loop turns, so the
        first layout and paint of each plot (~0.1 s) never add up to one long freeze."""
        if self.plots:
            return []
        return [lambda key=key: self._build_plot(key) for key in PLOTS]

    def _build_plot(self, key: str) -> None:
        import pyqtgraph as pg

        from studio.plots import ThemedPlot, alpha

        title = PLOTS[key]
        if key in TITLE_KEYS:
            words = " · ".join(f'<span style="color:{theme.SERIES[color]}">{text}</span>'
                               for _, color, text in TITLE_KEYS[key])
            title = f"{title} — {words}"
        p = ThemedPlot(title)
        p.setToolTip(PLOT_HELP.get(key, ""))
        p.setMinimumHeight(110)
        # four across on a 1280-px window without scrolling sideways, but never narrower than the
        # title: pyqtgraph lays a wider title out past the widget's edge, which cut off the right
        # of the plot (its axis and curve); too narrow a window scrolls instead
        title_w = p.getPlotItem().titleLabel.item.boundingRect().width()
        p.setMinimumWidth(max(100, int(title_w) + TITLE_MARGIN_PX))
        p.setLabel("bottom", "step")
        # Thousands of points, but only a few hundred pixels: draw the peaks, skip the rest.
        p.getPlotItem().setDownsampling(auto=True, mode="peak")
        p.getPlotItem().setClipToView(True)
        vb = p.getViewBox()
        vb.disableAutoRange()
        vb.sigRangeChangedManually.connect(lambda *_, k=key: self._manual_range(k))
        self.slots[key].fill(p)
        self.plots[key] = p
        self._draw_markers()

        def curve(color, name=None, width=2, **kw):
            return p.plot([], [], pen=pg.mkPen(color, width=width), name=name, **kw)

        if key == "loss":
            # the title names the curves in their colours: a legend box would sit on the curve
            self.curves["loss_raw"] = curve(alpha(theme.SERIES["train_raw"], 70), width=1)
            self.curves["loss"] = curve(theme.SERIES["train"])
            self.curves["eval"] = curve(theme.SERIES["eval"], symbol="o", symbolSize=6,
                                        symbolBrush=theme.SERIES["eval"], symbolPen=None)
            self._log_scale_changed(self.log_scale.isChecked())
            self._draw_overlay()
        elif key == "rewards":
            p.addLegend(offset=(-10, 10), labelTextColor=theme.plot_colors(p)[1])
            self.curves["r_chosen"] = curve(theme.SERIES["lr"], "chosen")
            self.curves["r_rejected"] = curve(theme.SERIES["limit"], "rejected")
            self.curves["r_margin"] = curve(theme.SERIES["train"], "margin")
        elif key == "pref":
            p.addLegend(offset=(-10, 10), labelTextColor=theme.plot_colors(p)[1])
            self.curves["r_acc"] = curve(theme.SERIES["grad"], "accuracy")
            self.curves["r_kl"] = curve(theme.SERIES["eval"])  # KTO only: no legend entry for the others
        elif key == "mem":
            # GiB like every other memory figure in the studio (pyqtgraph's SI prefixes would say GB)
            p.getAxis("left").enableAutoSIPrefix(False)
            p.setLabel("left", "GiB")
            self.curves["mem"] = curve(theme.SERIES["mem2"], width=1)
            self.curves["mem_peak"] = curve(theme.SERIES["mem"])
        else:
            self.curves[key] = curve(theme.SERIES[key])
        self._dirty = True

    # -- events ------------------------------------------------------------------------------
    def reset(self) -> None:
        self._manual.clear()
        self._drawn.clear()
        for s in self.series.values():
            s.clear()
        self.total_steps = 0
        self.last_step = {}
        self._t_started = self._t_last_step = self._t_end = self._t_last_event = None
        self._elapsed_before = 0.0
        self.banner.hide()
        for t in self.tiles.values():
            t.set("—")
        self.watch.reset()
        self._clear_markers()
        self.warning_label.hide()
        self.forgetting_label.hide()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.time_label.setText("")
        self._dirty = True

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_label.setText(STATE_TEXT.get(state, state))
        if state in ("finished", "stopped", "failed") and self._t_end is None:
            self._t_end = time.time()
        self._update_time()

    def show_run(self, run_dir: str) -> None:
        """Another run: clear the views; its events (replayed or live) fill them again."""
        self.reset()
        self.set_run_dir(run_dir)

    def set_run_dir(self, run_dir: str) -> None:
        if run_dir != self.run_dir:
            self.tensorboard.stop()
            self.tb_link.setText("")
        self.run_dir = run_dir
        self.run_label.setText(f"  {run_dir}" if run_dir else "")
        self.run_label.setToolTip(run_dir or "")
        self.btn_tensorboard.setEnabled(bool(run_dir))

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        when = ev.get("time") or time.time()
        for w in self.watch.feed(ev):
            self._add_warning(w)
        if kind in ("finished", "stopped") and ev.get("forgetting"):
            self.show_forgetting(ev["forgetting"])
        if kind == "started":
            if not ev.get("resumed_from_step"):
                self.reset()
            elif self._t_started is not None:
                # A resumed run: the time its earlier part trained counts, so Elapsed continues.
                self._elapsed_before += max(0.0, (self._t_end or self._t_last_event or when) - self._t_started)
            self.total_steps = int(ev.get("total_steps") or 0)
            task = ev.get("task") or ((ev.get("config") or {}).get("train") or {}).get("task") or "sft"
            self.set_preference(task != "sft")
            self._t_started = when
            self._t_end = None
            if self.total_steps:
                self.progress.setRange(0, self.total_steps)
                self.progress.setFormat("%v / %m steps")
            parts = [str(ev.get("method") or (ev.get("config") or {}).get("method", {}).get("name", "")),
                     task.upper() if task != "sft" else "",
                     f"on {ev.get('device')}" if ev.get("device") else "",
                     f"{fmt_count(ev.get('trainable_params'))} trainable" if ev.get("trainable_params") else ""]
            self.run_label.setText("  " + " · ".join(p for p in parts if p) +
                                   (f"  —  {ev.get('run_dir')}" if ev.get("run_dir") else ""))
        elif kind == "step":
            self._on_step(ev)
        elif kind == "eval" and ev.get("eval_loss") is not None:
            self.series["eval"].append(ev["step"], ev["eval_loss"])
            self._dirty = True
        elif kind in ("finished", "stopped", "failed"):
            self._t_end = when
            # The throttled refresh may not have shown the last step yet: flush it now, so a
            # finished run never shows a bar one step short.
            self._t_progress = 0.0
            self._update_readouts()
            if kind == "failed":
                self.show_failure({"error": ev.get("error", "The run failed."), "hint": ev.get("hint", ""),
                                   "field": ev.get("field") or "", "log_tail": ""})
        self._t_last_event = when

    def _on_step(self, ev: dict) -> None:
        step = ev.get("step")
        if step is None:
            return
        # Only record here: widgets are updated by the 10 Hz refresh. Setting six labels and the
        # progress bar per event re-laid the window out on every step and, at a few hundred
        # events a second, starved the event loop.
        self.last_step = ev
        self._t_last_step = ev.get("time") or time.time()
        if ev.get("total_steps"):
            self.total_steps = int(ev["total_steps"])
        for key, field in (("loss", "loss"), ("lr", "lr"), ("grad", "grad_norm"), ("tps", "tokens_per_s")):
            v = ev.get(field)
            if v is not None:
                self.series[key].append(step, v)
        now, peak = memory_now(ev), memory_peak(ev)
        if now is not None:
            self.series["mem"].append(step, now / GIB)
        if peak is not None:
            self.series["mem_peak"].append(step, peak / GIB)
        metrics = ev.get("metrics") or {}
        for name, key in PREFERENCE_SERIES.items():
            v = metrics.get(name)
            if isinstance(v, (int, float)):
                self.series[key].append(step, v)
        if metrics and not self.preference and any(k in metrics for k in PREFERENCE_SERIES):
            self.set_preference(True)  # a run joined after its started event
        self._dirty = True

    def set_preference(self, on: bool) -> None:
        """Show the preference plots in place of learning rate and gradient norm (or back)."""
        self.preference = on
        for sft_key, pref_key in PREFERENCE_SWAP.items():
            self.slots[sft_key].setVisible(not on)
            self.slots[pref_key].setVisible(on)

    def _update_readouts(self) -> None:
        ev = self.last_step
        if not ev:
            return
        now = time.monotonic()
        # QProgressBar repaints synchronously on every visible change; 4 Hz is smooth enough.
        if now - self._t_progress >= 0.25 or self.state != "running":
            self._t_progress = now
            if self.total_steps and self.progress.maximum() != self.total_steps:
                self.progress.setRange(0, self.total_steps)
                self.progress.setFormat("%v / %m steps")
            self.progress.setValue(min(int(ev["step"]), self.progress.maximum()))
        self.tiles["loss"].set(fmt_number(ev.get("loss")))
        self.tiles["lr"].set(fmt_number(ev.get("lr"), 3))
        tps = ev.get("tokens_per_s")
        self.tiles["tps"].set(fmt_count(tps) if tps is not None else "—")
        peak = memory_peak(ev)
        self.tiles["mem"].title.setText(memory_label(ev))
        self.tiles["mem"].set(fmt_bytes(peak if peak is not None else memory_now(ev)))
        epoch = ev.get("epoch")
        self.tiles["epoch"].set(f"{epoch:.2f}" if isinstance(epoch, (int, float)) else "—")
        last_eval = self.series["eval"].last()
        self.tiles["eval"].set(fmt_number(last_eval) if last_eval is not None else "—")

    # -- warnings, forgetting, TensorBoard ------------------------------------------------------
    def _add_warning(self, w) -> None:
        shown = self.watch.warnings[-3:]
        self.warning_label.setText("⚠ " + "\n⚠ ".join(x.message for x in shown))
        self.warning_label.show()
        self._draw_markers()

    def _clear_markers(self) -> None:
        for key, items in self.markers.items():
            plot = self.plots.get(key)
            for item in items:
                if plot is not None:
                    plot.removeItem(item)
        self.markers = {}

    def _draw_markers(self) -> None:
        """A dashed line with a short label at each warning's step, on its plot (once plots exist)."""
        if not self.plots:
            return
        import pyqtgraph as pg

        drawn = {id(getattr(m, "warning", None)) for items in self.markers.values() for m in items}
        for w in self.watch.warnings:
            if id(w) in drawn or w.plot not in self.plots:
                continue
            line = pg.InfiniteLine(pos=w.step, angle=90, movable=False,
                                   pen=pg.mkPen("#d9822b", width=1.5, style=Qt.PenStyle.DashLine),
                                   label="overfitting?" if w.kind == "overfitting" else "grad spike",
                                   labelOpts={"position": 0.92, "color": "#d9822b", "movable": False})
            line.warning = w
            line.setToolTip(w.message)
            self.plots[w.plot].addItem(line)
            self.markers.setdefault(w.plot, []).append(line)

    def marker_steps(self, plot: str) -> list[int]:
        """Steps marked on ``plot`` (tests)."""
        return [int(m.value()) for m in self.markers.get(plot, [])]

    def show_forgetting(self, forgetting: dict) -> None:
        from engine.evals import describe_forgetting

        text = describe_forgetting(forgetting)
        if text:
            self.forgetting_label.setText(f"Forgetting check: {text} (base → tuned, bundled general reference)")
            self.forgetting_label.show()

    def start_tensorboard(self) -> None:
        if self.run_dir:
            self.tb_link.setText("Starting TensorBoard…")
            self.tensorboard.start(self.run_dir)

    def _tensorboard_url(self, url: str) -> None:
        self.tb_link.setText(f'TensorBoard: <a href="{url}">{url}</a>')

    def shutdown(self) -> None:
        self.tensorboard.stop()

    def show_failure(self, info: dict) -> None:
        """The failure in the window's words, with a button to the control it names (if any) and
        the log lines that explain it (library chatter left out)."""
        error, hint = info.get("error") or "The run failed.", info.get("hint") or ""
        fields = list(dict.fromkeys(([info["field"]] if info.get("field") else []) + named_fields(f"{error} {hint}")))
        action, callback = "", None
        if fields and self.go_to is not None:
            action, callback = f"Go to {control_label(fields[0])}", lambda p=fields[0]: self.go_to(p)
        self.banner.show_message(f"The run failed: {window_text(error)}", window_text(hint),
                                 relevant_tail(info.get("log_tail", "")), action, callback)

    # -- the runs overlay ----------------------------------------------------------------------
    def overlay(self, run_dirs: list[str]) -> None:
        """Draw these runs' loss curves over the shown run's (read off the UI thread; [] clears)."""
        from studio.overlay import load_curves
        from studio.tasks import start_thread

        mine = str(self.run_dir)
        dirs = [d for d in run_dirs if d != mine]  # the shown run is drawn already
        if not dirs:
            self.set_overlay([])
            return
        self._overlay_task = start_thread(load_curves, dirs, parent=self)
        self._overlay_task.sig_result.connect(self.set_overlay)

    def set_overlay(self, curves: list[dict]) -> None:
        """Replace the overlaid runs with ``curves`` (studio.overlay.load_curves' dicts)."""
        for o in self.overlays:
            for item in o["items"]:
                if "loss" in self.plots:
                    self.plots["loss"].removeItem(item)
                    legend = self.plots["loss"].getPlotItem().legend
                    if legend is not None:
                        legend.removeItem(item)
        self.overlays = []
        for curve in curves:
            series = Series()
            series.set_weight(self.smoothing.value() / 100)
            for x, y in curve["loss"]:
                series.append(x, y)
            self.overlays.append({"curve": curve, "series": series, "items": []})
        self.btn_clear_overlay.setVisible(bool(self.overlays))
        self._draw_overlay()

    def _draw_overlay(self) -> None:
        if "loss" not in self.plots:
            return  # drawn when the plot is built
        import pyqtgraph as pg

        from studio.overlay import COLORS, label

        p = self.plots["loss"]
        for i, o in enumerate(self.overlays):
            color = COLORS[i % len(COLORS)]
            if not o["items"]:
                # The monitor's own curves are named in the title (a legend would sit on them); the
                # overlaid runs need a legend to tell which dashed line is which run.
                legend = p.getPlotItem().legend or p.addLegend(offset=(-10, 10), labelTextColor=theme.plot_colors(p)[1])
                train = p.plot([], [], pen=pg.mkPen(color, width=2, style=Qt.PenStyle.DashLine), name=label(o["curve"]))
                if not any(item is train for item, _ in legend.items):
                    legend.addItem(train, label(o["curve"]))
                ev = p.plot([], [], pen=None, symbol="t", symbolSize=7, symbolBrush=color, symbolPen=None)
                o["items"] = [train, ev]
            train, ev = o["items"]
            train.setData(*o["series"].smoothed())
            xs = [x for x, _ in o["curve"]["eval"]]
            ev.setData(xs, [y for _, y in o["curve"]["eval"]])
        self._manual.discard("loss")
        self._fit("loss")

    def overlay_names(self) -> list[str]:
        """The legend names of the overlaid runs (tests)."""
        from studio.overlay import label

        return [label(o["curve"]) for o in self.overlays]

    # -- drawing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Timer tick: bring one plot up to date (round robin), and the read-outs every cycle.

        One plot per tick, not all five at once: each plot's repaint then lands in its own
        paint pass (~5-10 ms) instead of one ~40 ms pass that would stall the event loop.
        Every plot is still refreshed at 10 Hz.
        """
        self._update_time()
        keys = [k for k in self.plots if not self.slots[k].isHidden()]  # the view's plots only
        if self._tick % max(1, len(keys)) == 0 and self._dirty:
            self._dirty = False
            self._pending = set(keys)
            self._update_readouts()
        self._tick += 1
        if not keys or not self._pending:
            return
        key = keys[self._tick % len(keys)]
        if key in self._pending:
            self._pending.discard(key)
            self._refresh_plot(key)

    def refresh_all(self) -> None:
        """Bring every plot and read-out up to date now (tests, screenshots)."""
        self._update_time()
        self._dirty = False
        self._update_readouts()
        for key in self.plots:
            self._refresh_plot(key)
        self._pending.clear()

    def _refresh_plot(self, key: str) -> None:
        s = self.series
        for ckey in _PLOT_CURVES[key]:
            src = s["loss"] if ckey == "loss_raw" else s[ckey]
            stamp = (src.n, src.x[src.n - 1] if src.n else None, src.weight)
            if self._drawn.get(ckey) == stamp:
                continue  # unchanged (eval points come rarely): do not make pyqtgraph redo it
            self._drawn[ckey] = stamp
            # Antialiased paths cost ~3 ms each at thousands of points, where the smoothing cannot
            # be seen anyway; short runs keep the nicer lines.
            self.curves[ckey].setData(*(src.smoothed() if ckey == "loss" else src.data()),
                                      antialias=src.n < ANTIALIAS_BELOW)
        self._fit(key)

    # Ranges are ours, not pyqtgraph's auto-range: auto-range moves both axes a little on every
    # update, and re-drawing the axes of five plots ten times a second cost more than the rest
    # of the UI together. Here x spans the whole run from the start, and y moves only when the
    # data leaves the view or fills less than a third of it.
    _PLOT_SERIES = {"loss": ("loss", "eval"), "lr": ("lr",), "grad": ("grad",), "tps": ("tps",),
                    "mem": ("mem", "mem_peak"), "rewards": ("r_chosen", "r_rejected", "r_margin"),
                    "pref": ("r_acc", "r_kl")}

    def _fit(self, key: str) -> None:
        plot = self.plots[key]
        if key in self._manual:
            return
        vb = plot.getViewBox()
        if any(vb.autoRangeEnabled()):  # the user pressed the "A" button: back to our fitting
            vb.disableAutoRange()
        xs, ys = [], []
        for name in self._PLOT_SERIES[key]:
            x, y = self.series[name].data()
            xs.append(x)
            ys.append(y)
        if key == "loss":  # the overlaid runs share the axes
            for o in self.overlays:
                x, y = o["series"].smoothed()
                xs += [x, np.asarray([p[0] for p in o["curve"]["eval"]], dtype=float)]
                ys += [y, np.asarray([p[1] for p in o["curve"]["eval"]], dtype=float)]
        x = np.concatenate(xs) if xs else np.zeros(0)
        y = np.concatenate(ys) if ys else np.zeros(0)
        if not len(x):
            return
        last = float(x.max())
        hi = float(self.total_steps) if self.total_steps >= last else _nice_ceiling(last * 1.25)
        if self.overlays and key == "loss":
            hi = max(hi, last)
        lo = min(0.0, float(x.min()))
        (vx0, vx1), (vy0, vy1) = vb.viewRange()
        pad = 0.02 * (hi - lo)
        if abs(vx0 - (lo - pad)) > 1e-6 * (hi - lo) or abs(vx1 - (hi + pad)) > 1e-6 * (hi - lo):
            vb.setXRange(lo - pad, hi + pad, padding=0)
        if key == "loss" and self.log_scale.isChecked():
            y = np.log10(y[y > 0])
        y = y[np.isfinite(y)]
        if not len(y):
            return
        y0, y1 = float(y.min()), float(y.max())
        span = max(y1 - y0, abs(y1) * 0.05, 1e-12)
        if y0 < vy0 or y1 > vy1 or (vy1 - vy0) > 3 * span:
            # headroom on the side the data moves to, so a falling loss does not re-range each tick
            below = 0.3 if y0 < vy0 else 0.08
            above = 0.3 if y1 > vy1 else 0.08
            vb.setYRange(y0 - below * span, y1 + above * span, padding=0)

    def _manual_range(self, key: str) -> None:
        self._manual.add(key)  # the user zoomed or panned: leave this plot alone until reset

    def _update_time(self) -> None:
        if self._t_started is None:
            return
        end = self._t_end or time.time()
        elapsed = self._elapsed_before + max(0.0, end - self._t_started)
        text = f"Elapsed {fmt_duration(elapsed)}"
        if self.state in ("running", "starting", "stopping") and self.last_step.get("eta_s") is not None:
            since = time.time() - (self._t_last_step or time.time())
            text += f"   ·   ETA {fmt_duration(max(0.0, self.last_step['eta_s'] - since))}"
        elif self._t_end is not None:
            text += "   ·   done"
        if text != self.time_label.text():  # this runs at 50 Hz; only a new second is news
            self.time_label.setText(text)

    def _smoothing_changed(self, v: int) -> None:
        self.smoothing_value.setText(f"{v / 100:.2f}")
        self.series["loss"].set_weight(v / 100)
        for o in self.overlays:
            o["series"].set_weight(v / 100)
        if self.overlays:
            self._draw_overlay()
        if self.settings:
            self.settings.set("monitor/smoothing", v)
        self._dirty = True

    def _log_scale_changed(self, on: bool) -> None:
        if self.plots:
            self.plots["loss"].setLogMode(y=on)
            self._manual.discard("loss")
        if self.settings:
            self.settings.set("monitor/log_scale", on)
        self._dirty = True

    def curve_points(self, key: str) -> int:
        if key not in self.curves:
            return 0
        x = self.curves[key].xData  # all points set; getData() would give the clipped view
        return 0 if x is None else len(x)


def memory_now(ev: dict):
    """Bytes in use at this step: CUDA reserved on a GPU, else allocated (the RSS on the CPU)."""
    return ev.get("mem_reserved") if ev.get("mem_reserved") is not None else ev.get("mem_allocated")


def memory_peak(ev: dict):
    """The run's peak so far, the quantity the estimate predicts: CUDA's peak reserved on a GPU,
    the peak RSS on the CPU (None for runs recorded before the engine sent peaks)."""
    return ev.get("mem_peak_reserved") if ev.get("mem_peak_reserved") is not None else ev.get("mem_peak")


def memory_label(ev: dict) -> str:
    """The memory tile's title: which quantity it shows."""
    gpu = ev.get("mem_reserved") is not None or ev.get("mem_peak_reserved") is not None
    if memory_peak(ev) is None:
        return "Memory now (reserved)" if gpu else "Memory now (RSS)"
    return "Peak reserved (GPU)" if gpu else "Peak RSS (CPU)"


def _nice_ceiling(v: float) -> float:
    """The next 1/2/5 × 10^k at or above v (the x range grows in a few visible jumps, not per step)."""
    if v <= 10:
        return 10.0
    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if m * mag >= v:
            return float(m * mag)
    return float(10 * mag)
