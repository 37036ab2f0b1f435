"""Estimate panel: predicted GPU memory by component as a stacked bar, and the fits / tight /
exceeds verdict against the detected or a chosen GPU; below it the measured time of the run
(studio/panels/estimate_time.py).

Recomputed in the job helper process shortly after any change (the engine's estimator needs
no weights).
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from studio import fact_cache
from studio.lazy import np
from studio.messages import is_user_error, plain_message, window_message
from studio.panels.base import Area, PanelDefaults, Studio
from studio.panels.estimate_time import TimeSection
from studio.tasks import LatestJob, start_job
from studio.widgets import InfoGrid, PlotSlot, compact, fmt_bytes, fmt_count, muted
from studio.wording import control_name, window_text

GIB = 1 << 30
# Until the estimator's own list arrives: sizes any estimator understands.
FALLBACK_GPUS = ["8GB", "12GB", "16GB", "24GB", "40GB", "48GB", "80GB"]
COMPONENT_COLORS = ["#3d7bd9", "#e0822d", "#2f9e68", "#9b59b6", "#d64590", "#c9a227", "#17a2b8",
                    "#8a8f98", "#6c5ce7", "#b5651d"]
VERDICT_COLORS = {"fits": "#2f9e68", "tight": "#c98a1a", "exceeds": "#d64545"}
VERDICT_WORDS = {"fits": "Fits", "tight": "Tight", "exceeds": "Exceeds"}


def gpu_choices(known: list | None = None) -> list[tuple[str, object]]:
    """(label, value passed as ``gpu=``): the estimator's own list when it publishes one."""
    # None: the engine judges against this machine — its GPU, or without one its CPU and RAM.
    out: list[tuple[str, object]] = [("This machine (detected)", None)]
    for name, size in known or [(n, None) for n in FALLBACK_GPUS]:
        if name.upper().endswith("GB"):
            # the estimator reads "16GB" as 16 GiB (engine.estimate.gpus): say so in the studio's unit
            out.append((f"Any GPU with {name[:-2]} GiB", name))
        else:
            out.append((f"{name} ({size / GIB:.0f} GiB)" if size else name, name))
    return out


class EstimatePanel(QWidget, PanelDefaults):
    key, title, area = "estimate", "Estimate", Area.RIGHT
    sig_device = Signal(object)         # the device chosen (a GPU name/size, or None: this machine)
    sig_blocker = Signal(object, str)   # (run-file path or None, message): what the estimator refused

    @classmethod
    def create(cls, studio: Studio) -> EstimatePanel:
        panel = cls(studio.settings)
        studio.config.sig_config.connect(panel.update_estimate)
        studio.runs.sig_active.connect(panel.time.set_run_active)
        panel.sig_device.connect(studio.bus.sig_device)
        # a config the estimator refuses (a ConfigError naming a field) gates Start like a bad field
        panel.sig_blocker.connect(lambda path, msg: studio.config.set_blocker("estimate", path, msg))
        return panel

    def plot_steps(self) -> list:
        return [self.build_plots]

    def shutdown(self) -> None:
        self.time.shutdown()

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self._cfg = None
        self._request: tuple | None = None   # (config key, gpu) of the estimate asked for last
        self.cached = False                  # what is shown is the last launch's estimate (fact_cache)
        lay = QVBoxLayout(self)

        top = QHBoxLayout()
        top.addWidget(QLabel("Device:"))
        self.gpu = compact(QComboBox(), 12)
        self._fill_gpus(None)
        self.gpu.currentIndexChanged.connect(self._gpu_changed)
        top.addWidget(self.gpu, 1)
        lay.addLayout(top)

        self.verdict = QLabel("—")
        self.verdict.setObjectName("verdict")
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setWordWrap(True)
        self.verdict.setMinimumHeight(34)
        f = self.verdict.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.1)
        self.verdict.setFont(f)
        lay.addWidget(self.verdict)
        self.summary = muted("")
        self.summary.setObjectName("estimate-summary")
        lay.addWidget(self.summary)

        self.slot = PlotSlot(min_height=70)
        self.slot.setMaximumHeight(96)
        self.plot = self.bars = self.limit = None
        self._last_bars: tuple = ({}, None)
        lay.addWidget(self.slot)

        legend_box = QGroupBox("Memory by component")
        ll = QVBoxLayout(legend_box)
        self.legend = QLabel("—")
        self.legend.setObjectName("estimate-legend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        ll.addWidget(self.legend)
        lay.addWidget(legend_box)

        self.advice_box = QGroupBox("To make it fit")
        al = QVBoxLayout(self.advice_box)
        self.advice = QLabel("")
        self.advice.setWordWrap(True)
        self.advice.setTextFormat(Qt.TextFormat.RichText)
        al.addWidget(self.advice)
        lay.addWidget(self.advice_box)
        self.advice_box.hide()

        self.time = TimeSection()
        lay.addWidget(self.time)

        counts_box = QGroupBox("Parameters")
        cl = QVBoxLayout(counts_box)
        self.counts = InfoGrid(["Total", "Trainable", "Adapter size"])
        cl.addWidget(self.counts)
        lay.addWidget(counts_box)
        self.notes = muted("")
        self.notes.setObjectName("estimate-notes")
        lay.addWidget(self.notes)
        lay.addStretch(1)

        self._job = LatestJob("estimate", delay_ms=100, parent=self)
        self._job.sig_started.connect(lambda: self.summary.setText(self.summary.text() or "Estimating…"))
        self._job.sig_result.connect(self._on_result)
        self._job.sig_error.connect(self._on_error)
        self._gpus = start_job("gpu_list", key="gpu_list", parent=self)
        self._gpus.sig_result.connect(self._on_gpu_list)

    # -- GPU choice --------------------------------------------------------------------------
    def _fill_gpus(self, known):
        self.gpu.blockSignals(True)
        self.gpu.clear()
        for label, value in gpu_choices(known):
            self.gpu.addItem(label, value)
        want = self.settings.get("estimate/gpu") if self.settings is not None else ""
        self.gpu.setCurrentIndex(max(self.gpu.findData(want or None), 0))
        self.gpu.blockSignals(False)

    def _on_gpu_list(self, known):
        if known:
            self._fill_gpus(known)
            # The saved choice (a T4, say) could only be selected now that the list is here: the
            # estimate shown so far was judged against another device, so ask again.
            if self._cfg is not None and (self._request is None or self._request[1] != self.gpu.currentData()):
                self._estimate(now=True)
            self.sig_device.emit(self.gpu.currentData())

    def _gpu_changed(self, _i):
        if self.settings is not None:
            self.settings.set("estimate/gpu", self.gpu.currentData() or "")
        self.sig_device.emit(self.gpu.currentData())
        if self._cfg is not None:
            self._estimate(now=True)

    # -- estimating --------------------------------------------------------------------------
    def update_estimate(self, cfg) -> None:
        self.time.set_config(cfg)
        if cfg is None:
            return
        self._cfg = cfg
        self._estimate()

    def _estimate(self, now: bool = False) -> None:
        d = self._cfg.to_dict()
        d.pop("output_dir", None)  # where the run is saved changes nothing here
        request = (repr(d), self.gpu.currentData())
        if request == self._request and not now:
            return
        self._request = request
        cached = fact_cache.shared().get("estimate", list(request))
        if cached is not None and self.verdict.text() == "—":
            # the last launch's estimate for these settings, at once, marked; the helper's replaces it
            self._on_result(cached, cached=True)
        else:
            self._mark_stale()
        (self._job.run_now if now else self._job.request)(self._cfg.to_dict(), self.gpu.currentData())

    def _mark_stale(self) -> None:
        """The numbers shown are for other settings until the new estimate arrives: say so, so
        the Parameters box never passes off the previous method's counts as this one's."""
        for key in ("Total", "Trainable", "Adapter size"):
            text = self.counts.values[key].text()
            if text != "—" and not text.endswith("(updating…)"):
                self.counts.set(key, f"{text} (updating…)")

    def _on_result(self, out: dict, cached: bool = False):
        self.cached = cached
        if not cached and self._request is not None:
            fact_cache.shared().put("estimate", list(self._request), out)
        labels = out.get("labels") or {}
        comps = {labels.get(k, k.replace("_", " ").capitalize()): v
                 for k, v in (out.get("components") or {}).items() if v}
        need, cap = out.get("device_total"), out.get("gpu_bytes")
        self._show_bars(comps, cap)
        verdict = out.get("verdict") or ""
        on_cpu = bool(out.get("on_cpu"))
        # The verdict names the device it was judged against, the same one the Device box shows.
        device = "this machine's RAM" if on_cpu else (out.get("gpu_name") or self.gpu.currentText())
        of = f"of {fmt_bytes(cap)} ({device})"
        if verdict in VERDICT_WORDS:
            self._set_verdict(verdict, f"{VERDICT_WORDS[verdict]}: peak {fmt_bytes(need)} {of}")
        else:
            self._set_verdict("", f"Peak about {fmt_bytes(need)}")
        if on_cpu:
            lines = [f"No GPU here, so the run trains on this machine's CPU. Predicted peak RSS (the "
                     f"process's memory at its highest: tensors {fmt_bytes(out.get('peak_allocated'))} plus "
                     "the runtime) — the Monitor's “Peak RSS” measures the same. Choose a GPU above to plan for one."]
        else:
            where = out.get("gpu_name") or "no GPU here — choose one above to compare"
            lines = [f"Predicted peak {fmt_bytes(out.get('peak_allocated'))} allocated, "
                     f"{fmt_bytes(out.get('peak_reserved'))} reserved (the Monitor's “Peak reserved” "
                     f"measures the same); GPU: {where}."]
        if (out.get("processes") or 1) > 1:
            # train.distributed: the figures are per GPU (per process) under the chosen strategy.
            lines.insert(0, f"Per GPU: {out.get('layout')} over {out['processes']} processes.")
        if out.get("max_batch_size"):
            lines.append(f"Largest batch that fits: {out['max_batch_size']}; longest {control_name('data.max_length')}: "
                         f"{out.get('max_seq_len') or '—'}.")
        if cached:
            lines.insert(0, "(Cached from the last launch; estimating again…)")
        self.summary.setText(" ".join(lines))
        tips = out.get("suggestions") or []
        self.advice.setText("<br>".join("• " + html.escape(window_text(str(t))) for t in tips))
        self.advice_box.setVisible(bool(tips))
        self.notes.setText("\n".join([*(f"· {window_text(n)}" for n in (out.get("notes") or [])),
                                      *map(window_text, assumption_lines(out.get("assumptions") or {}))]))
        self._show_counts(out.get("total_params"), out.get("trainable_params"), out.get("adapter_bytes"))
        self.sig_blocker.emit(None, "")

    def _on_error(self, exc):
        self.cached = False
        self._set_verdict("", "No estimate")
        self.summary.setText(window_message(exc))
        self._show_bars({}, None)
        self._show_counts(None, None, None)  # never the previous settings' numbers
        self.advice_box.hide()
        field = getattr(exc, "field", "") if is_user_error(exc) else ""
        text = plain_message(exc)
        if field and text.startswith(f"{field}: "):
            # Start's reason and the status line put the control's name before the message already
            text = text[len(field) + 2:]
        self.sig_blocker.emit(field or None, window_text(text, user_error=is_user_error(exc)))

    def _set_verdict(self, verdict: str, text: str):
        self.verdict.setText(text)
        self.verdict.setProperty("verdict", verdict)
        color = VERDICT_COLORS.get(verdict)
        if color:
            self.verdict.setStyleSheet(f"background: {color}; color: white; border-radius: 4px; padding: 4px;")
        else:
            self.verdict.setStyleSheet("border: 1px solid palette(mid); border-radius: 4px; padding: 4px;")

    # -- drawing -----------------------------------------------------------------------------
    def build_plots(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        from studio.plots import ThemedPlot

        self.plot = ThemedPlot()
        self.plot.setMinimumHeight(70)
        self.plot.hideAxis("left")
        self.plot.setLabel("bottom", "GiB")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.getPlotItem().showGrid(x=True, y=False, alpha=0.15)
        self.plot.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x0=[], x1=[], y0=[], y1=[], brushes=[], pen=None)
        self.plot.addItem(self.bars)
        self.limit = pg.InfiniteLine(angle=90, movable=False,
                                     pen=pg.mkPen("#d64545", width=2, style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.limit)
        self.limit.hide()
        self.slot.fill(self.plot)
        self._show_bars(*self._last_bars)

    def _show_bars(self, comps: dict, capacity):
        self._last_bars = (comps, capacity)
        names = list(comps)
        rows = []
        for i, n in enumerate(names):
            c = COMPONENT_COLORS[i % len(COMPONENT_COLORS)]
            rows.append(f'<tr><td><span style="color:{c}">■</span>&nbsp;{html.escape(n)}</td>'
                        f'<td align="right">&nbsp;&nbsp;{fmt_bytes(comps[n])}</td></tr>')
        self.legend.setText(f"<table>{''.join(rows)}</table>" if rows else "—")
        self.slot.setVisible(bool(names))
        if self.plot is None or not names:
            return
        import pyqtgraph as pg

        sizes = np.array([comps[n] / GIB for n in names], dtype=float)
        x1 = np.cumsum(sizes)
        x0 = x1 - sizes
        brushes = [pg.mkBrush(COMPONENT_COLORS[i % len(COMPONENT_COLORS)]) for i in range(len(names))]
        self.bars.setOpts(x0=x0, x1=x1, y0=np.zeros(len(names)), y1=np.ones(len(names)), brushes=brushes)
        if capacity:
            self.limit.setValue(capacity / GIB)
            self.limit.show()
        else:
            self.limit.hide()
        hi = max(float(x1[-1]), (capacity or 0) / GIB, 0.01)
        self.plot.setXRange(0, hi * 1.05, padding=0)
        self.plot.setYRange(-0.15, 1.15, padding=0)

    def _show_counts(self, total, trainable, adapter):
        self.counts.set("Total", fmt_count(total))
        pct = f" ({100 * trainable / total:.3g} %)" if total and trainable is not None else ""
        self.counts.set("Trainable", fmt_count(trainable) + pct)
        self.counts.set("Adapter size", fmt_bytes(adapter))


def assumption_lines(a: dict) -> list[str]:
    """What the estimate assumed about the run (engine.estimate's ``assumptions``), one line each."""
    if not a:
        return []
    out = [f"· assumed: attention {a.get('attention')}, loss: {a.get('loss')}, packing "
           f"{'on' if a.get('packing') else 'off'}, autocast {a.get('autocast') or 'none'}"]
    out += [f"· {what}: {dtype}" for what, dtype in (a.get("dtypes") or {}).items()]
    return out
