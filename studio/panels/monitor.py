"""Monitor: live plots of a run (loss, learning rate, grad-norm, tokens/s, memory) and progress.

Events only append to arrays; a 10 Hz timer pushes the arrays into curves that were created
once (``setData``), with peak downsampling and clip-to-view, so a 10,000-step run redraws as
cheaply as a 10-step one and a burst of events never blocks the UI.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio import theme
from studio.series import Series
from studio.widgets import Banner, PlotSlot, fmt_bytes, fmt_count, fmt_duration, fmt_number, muted

REFRESH_MS = 100
PLOTS = {"loss": "Loss", "lr": "Learning rate", "grad": "Gradient norm", "tps": "Tokens / s", "mem": "Memory"}
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
        lay.addWidget(muted(title, wrap=False))
        self.value = QLabel("—")
        f = self.value.font()
        f.setPointSizeF(f.pointSizeF() * 1.35)
        f.setBold(True)
        self.value.setFont(f)
        lay.addWidget(self.value)

    def set(self, text: str) -> None:
        self.value.setText(text)


class MonitorPanel(QWidget):
    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.series = {k: Series() for k in ("loss", "eval", "lr", "grad", "tps", "mem", "mem_res")}
        self._dirty = False
        self.state = "idle"
        self.total_steps = 0
        self.last_step: dict = {}
        self._t_started: float | None = None
        self._t_last_step: float | None = None
        self._t_end: float | None = None
        self.run_dir = ""

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
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
        head.addWidget(self.run_label, 1)
        lay.addLayout(head)

        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v / %m steps")
        prog.addWidget(self.progress, 1)
        self.time_label = QLabel("")
        self.time_label.setObjectName("time-label")
        self.time_label.setMinimumWidth(260)
        prog.addWidget(self.time_label)
        lay.addLayout(prog)

        tiles = QHBoxLayout()
        self.tiles = {k: StatTile(t) for k, t in (("loss", "Train loss"), ("eval", "Eval loss"),
                                                  ("lr", "Learning rate"), ("tps", "Tokens / s"),
                                                  ("mem", "Memory"), ("epoch", "Epoch"))}
        for t in self.tiles.values():
            tiles.addWidget(t)
        lay.addLayout(tiles)

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
        lay.addLayout(controls)

        grid = QGridLayout()
        grid.setSpacing(6)
        self.slots = {k: PlotSlot() for k in PLOTS}
        grid.addWidget(self.slots["loss"], 0, 0, 1, 2)
        grid.addWidget(self.slots["lr"], 1, 0)
        grid.addWidget(self.slots["grad"], 1, 1)
        grid.addWidget(self.slots["tps"], 2, 0)
        grid.addWidget(self.slots["mem"], 2, 1)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        grid.setRowStretch(2, 2)
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

        p = ThemedPlot(PLOTS[key])
        p.setLabel("bottom", "step")
        # Thousands of points, but only a few hundred pixels: draw the peaks, skip the rest.
        p.getPlotItem().setDownsampling(auto=True, mode="peak")
        p.getPlotItem().setClipToView(True)
        self.slots[key].fill(p)
        self.plots[key] = p

        def curve(color, name=None, width=2, **kw):
            return p.plot([], [], pen=pg.mkPen(color, width=width), name=name, **kw)

        if key == "loss":
            p.addLegend(offset=(-10, 10), labelTextColor=theme.plot_colors(p)[1])
            self.curves["loss_raw"] = curve(alpha(theme.SERIES["train_raw"], 70), width=1)
            self.curves["loss"] = curve(theme.SERIES["train"], "train")
            self.curves["eval"] = curve(theme.SERIES["eval"], "eval", symbol="o", symbolSize=6,
                                        symbolBrush=theme.SERIES["eval"], symbolPen=None)
            self._log_scale_changed(self.log_scale.isChecked())
        elif key == "mem":
            p.setLabel("left", units="B")
            self.curves["mem"] = curve(theme.SERIES["mem"], "allocated")
            self.curves["mem_res"] = curve(theme.SERIES["mem2"], "reserved")
        else:
            self.curves[key] = curve(theme.SERIES[key])
        self._dirty = True

    # -- events ------------------------------------------------------------------------------
    def reset(self) -> None:
        for s in self.series.values():
            s.clear()
        self.total_steps = 0
        self.last_step = {}
        self._t_started = self._t_last_step = self._t_end = None
        self.banner.hide()
        for t in self.tiles.values():
            t.set("—")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.time_label.setText("")
        self._dirty = True

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_label.setText(STATE_TEXT.get(state, state))
        if state in ("finished", "stopped", "failed") and self._t_end is None:
            self._t_end = time.time()
        self._update_time()

    def set_run_dir(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.run_label.setText(f"  {run_dir}" if run_dir else "")

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "started":
            if not ev.get("resumed_from_step"):
                self.reset()
            self.total_steps = int(ev.get("total_steps") or 0)
            self._t_started = ev.get("time") or time.time()
            self._t_end = None
            if self.total_steps:
                self.progress.setRange(0, self.total_steps)
            parts = [str(ev.get("method") or (ev.get("config") or {}).get("method", {}).get("name", "")),
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
            self._t_end = ev.get("time") or time.time()
            if kind == "failed":
                self.show_failure({"error": ev.get("error", "The run failed."), "hint": ev.get("hint", ""),
                                   "log_tail": ""})

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
        for key, field in (("loss", "loss"), ("lr", "lr"), ("grad", "grad_norm"), ("tps", "tokens_per_s"),
                           ("mem", "mem_allocated"), ("mem_res", "mem_reserved")):
            v = ev.get(field)
            if v is not None:
                self.series[key].append(step, v)
        self._dirty = True

    def _update_readouts(self) -> None:
        ev = self.last_step
        if not ev:
            return
        if self.total_steps and self.progress.maximum() != self.total_steps:
            self.progress.setRange(0, self.total_steps)
        self.progress.setValue(min(int(ev["step"]), self.progress.maximum()))
        self.tiles["loss"].set(fmt_number(ev.get("loss")))
        self.tiles["lr"].set(fmt_number(ev.get("lr"), 3))
        tps = ev.get("tokens_per_s")
        self.tiles["tps"].set(fmt_count(tps) if tps is not None else "—")
        self.tiles["mem"].set(fmt_bytes(ev.get("mem_reserved") or ev.get("mem_allocated")))
        epoch = ev.get("epoch")
        self.tiles["epoch"].set(f"{epoch:.2f}" if isinstance(epoch, (int, float)) else "—")
        last_eval = self.series["eval"].last()
        self.tiles["eval"].set(fmt_number(last_eval) if last_eval is not None else "—")

    def show_failure(self, info: dict) -> None:
        self.banner.show_message(f"The run failed: {info.get('error')}", info.get("hint", ""),
                                 info.get("log_tail", ""))

    # -- drawing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """The 10 Hz timer: push new points into the curves (only when something changed)."""
        self._update_time()
        if not self._dirty:
            return
        self._dirty = False
        self._update_readouts()
        s = self.series
        for key, c in self.curves.items():
            if key == "loss_raw":
                c.setData(*s["loss"].data())
            elif key == "loss":
                c.setData(*s["loss"].smoothed())
            else:
                c.setData(*s[key].data())

    def _update_time(self) -> None:
        if self._t_started is None:
            return
        end = self._t_end or time.time()
        elapsed = max(0.0, end - self._t_started)
        text = f"Elapsed {fmt_duration(elapsed)}"
        if self.state in ("running", "starting", "stopping") and self.last_step.get("eta_s") is not None:
            since = time.time() - (self._t_last_step or time.time())
            text += f"   ·   ETA {fmt_duration(max(0.0, self.last_step['eta_s'] - since))}"
        elif self._t_end is not None:
            text += "   ·   done"
        self.time_label.setText(text)

    def _smoothing_changed(self, v: int) -> None:
        self.smoothing_value.setText(f"{v / 100:.2f}")
        self.series["loss"].set_weight(v / 100)
        if self.settings:
            self.settings.set("monitor/smoothing", v)
        self._dirty = True

    def _log_scale_changed(self, on: bool) -> None:
        if self.plots:
            self.plots["loss"].setLogMode(y=on)
        if self.settings:
            self.settings.set("monitor/log_scale", on)
        self._dirty = True

    def curve_points(self, key: str) -> int:
        if key not in self.curves:
            return 0
        x = self.curves[key].xData  # all points set; getData() would give the clipped view
        return 0 if x is None else len(x)
