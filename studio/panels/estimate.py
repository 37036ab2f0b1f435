"""Estimate panel: memory by component as a stacked bar, and the fits / tight / exceeds verdict.

Recomputed off the UI thread shortly after any change. When the engine's estimator is not
installed (it landed after the studio), the panel says so and shows the exact parameter
counts instead — never a crash.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from studio.widgets import InfoGrid, PlotSlot, fmt_bytes, fmt_count, muted
from studio.workers import LatestJob, run_job

GIB = 1 << 30
# Offered when the estimator does not publish its own list; the estimate uses the memory size.
FALLBACK_GPUS = [("NVIDIA T4", 16), ("NVIDIA RTX 3090 / 4090", 24), ("NVIDIA L4 / A10G", 24),
                 ("NVIDIA A100 40GB", 40), ("NVIDIA A100 80GB", 80), ("NVIDIA H100 80GB", 80),
                 ("NVIDIA H200", 141)]
COMPONENT_COLORS = ["#3d7bd9", "#e0822d", "#2f9e68", "#9b59b6", "#d64590", "#c9a227", "#17a2b8",
                    "#8a8f98"]
VERDICT_COLORS = {"fits": "#2f9e68", "tight": "#c98a1a", "exceeds": "#d64545"}


def gpu_choices(known: list | None = None) -> list[tuple[str, object]]:
    """(label, value passed as ``gpu=``): the estimator's own list when it publishes one."""
    out: list[tuple[str, object]] = [("Detected GPU (or none)", None)]
    if known:
        for name, mem in known:
            gib = mem / GIB if isinstance(mem, (int, float)) and mem > 1e6 else mem
            out.append((f"{name} ({gib:.0f} GiB)" if isinstance(gib, (int, float)) else str(name), name))
    else:
        out += [(f"{n} ({g} GiB)", n) for n, g in FALLBACK_GPUS]
    return out


class EstimatePanel(QWidget):
    sig_gpu_changed = Signal(object)

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self._cfg = None
        lay = QVBoxLayout(self)

        top = QHBoxLayout()
        top.addWidget(QLabel("GPU:"))
        self.gpu = QComboBox()
        self._fill_gpus(None)
        self.gpu.currentIndexChanged.connect(self._gpu_changed)
        run_job("gpu_list", on_done=self._on_gpu_list)
        top.addWidget(self.gpu, 1)
        lay.addLayout(top)

        self.verdict = QLabel("—")
        self.verdict.setObjectName("verdict")
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setMinimumHeight(34)
        f = self.verdict.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.15)
        self.verdict.setFont(f)
        lay.addWidget(self.verdict)
        self.summary = muted("")
        lay.addWidget(self.summary)

        self.slot = PlotSlot(min_height=90)
        self.slot.setMaximumHeight(130)
        self.plot = self.bars = self.limit = None
        self._last_bars = ({}, None)
        lay.addWidget(self.slot)

        legend_box = QGroupBox("Memory by component")
        ll = QVBoxLayout(legend_box)
        self.legend = QLabel("")
        self.legend.setObjectName("estimate-legend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        ll.addWidget(self.legend)
        lay.addWidget(legend_box)

        counts_box = QGroupBox("Parameters")
        cl = QVBoxLayout(counts_box)
        self.counts = InfoGrid(["Total", "Trainable", "Adapter size"])
        cl.addWidget(self.counts)
        lay.addWidget(counts_box)
        self.status = muted("")
        lay.addWidget(self.status)
        lay.addStretch(1)

        self._job = LatestJob("estimate", delay_ms=100, parent=self)
        self._job.sig_started.connect(lambda: self.status.setText("Estimating…"))
        self._job.sig_result.connect(self._on_result)
        self._job.sig_error.connect(self._on_error)

    def build_plots(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        from studio.plots import ThemedPlot

        self.plot = ThemedPlot()
        self.plot.setMinimumHeight(90)
        self.plot.hideAxis("left")
        self.plot.setLabel("bottom", "GiB")
        self.plot.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x0=[], x1=[], y0=[], y1=[], brushes=[], pen=None)
        self.plot.addItem(self.bars)
        self.limit = pg.InfiniteLine(angle=90, movable=False,
                                     pen=pg.mkPen("#d64545", width=2, style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.limit)
        self.limit.hide()
        self.slot.fill(self.plot)
        self._show_bars(*self._last_bars)

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

    def update_estimate(self, cfg) -> None:
        if cfg is None:
            return
        self._cfg = cfg
        self._job.request(cfg, self.gpu.currentData())

    def _gpu_changed(self, _i):
        if self.settings is not None:
            self.settings.set("estimate/gpu", self.gpu.currentData() or "")
        if self._cfg is not None:
            self._job.run_now(self._cfg, self.gpu.currentData())

    # -- results -----------------------------------------------------------------------------
    def _on_result(self, out: dict):
        self.status.setText("")
        if out.get("missing"):
            self._show_missing(out["counts"])
            return
        comps = {k: v for k, v in (out.get("components") or {}).items() if v}
        total = out.get("device_total") or out.get("gpu_bytes")
        self._show_bars(comps, total)
        peak = out.get("peak_reserved") or out.get("peak_allocated")
        gpu_name = out.get("gpu_name") or "no GPU detected"
        self._set_verdict(out.get("verdict") or "", f"{fmt_bytes(peak)} of {fmt_bytes(total)}" if total
                          else fmt_bytes(peak))
        self.summary.setText(f"Peak {fmt_bytes(peak)} (allocated {fmt_bytes(out.get('peak_allocated'))})"
                             f" on {gpu_name}.")
        self._show_counts(out.get("total_params"), out.get("trainable_params"), out.get("adapter_bytes"))

    def _show_missing(self, counts: dict):
        self._set_verdict("", "estimator not available")
        self.summary.setText("The memory estimator is not installed in this build; the parameter counts "
                             "below are exact.")
        self._show_bars({}, None)
        self._show_counts(counts.get("total_params"), counts.get("trainable_params"), counts.get("adapter_bytes"))

    def _on_error(self, exc):
        from studio.errors import plain_message

        self._set_verdict("", "no estimate")
        self.summary.setText(plain_message(exc))
        self.status.setText("")

    def _set_verdict(self, verdict: str, detail: str):
        color = VERDICT_COLORS.get(verdict)
        word = {"fits": "Fits", "tight": "Tight", "exceeds": "Exceeds"}.get(verdict, "")
        self.verdict.setText(f"{word} — {detail}" if word else detail)
        self.verdict.setProperty("verdict", verdict)
        if color:
            self.verdict.setStyleSheet(f"background: {color}; color: white; border-radius: 4px; padding: 4px;")
        else:
            self.verdict.setStyleSheet("border: 1px solid palette(mid); border-radius: 4px; padding: 4px;")

    def _show_bars(self, comps: dict, device_total):
        self._last_bars = (comps, device_total)
        names = list(comps)
        rows = []
        for i, n in enumerate(names):
            c = COMPONENT_COLORS[i % len(COMPONENT_COLORS)]
            rows.append(f'<tr><td><span style="color:{c}">■</span> {n.replace("_", " ")}</td>'
                        f'<td align="right">&nbsp;&nbsp;{fmt_bytes(comps[n])}</td></tr>')
        self.legend.setText(f"<table>{''.join(rows)}</table>" if rows else "—")
        if self.plot is None:
            return
        import pyqtgraph as pg

        sizes = np.array([comps[n] / GIB for n in names], dtype=float)
        x1 = np.cumsum(sizes)
        x0 = x1 - sizes
        brushes = [pg.mkBrush(COMPONENT_COLORS[i % len(COMPONENT_COLORS)]) for i in range(len(names))]
        self.bars.setOpts(x0=x0, x1=x1, y0=np.zeros(len(names)), y1=np.ones(len(names)), brushes=brushes)
        if device_total:
            self.limit.setValue(device_total / GIB)
            self.limit.show()
        else:
            self.limit.hide()
        hi = max([x1[-1] if len(x1) else 0.0, (device_total or 0) / GIB, 0.1])
        self.plot.setXRange(0, hi * 1.05, padding=0)
        self.plot.setYRange(-0.2, 1.2, padding=0)

    def _show_counts(self, total, trainable, adapter):
        self.counts.set("Total", fmt_count(total))
        pct = f" ({100 * trainable / total:.3g} %)" if total and trainable is not None else ""
        self.counts.set("Trainable", fmt_count(trainable) + pct)
        self.counts.set("Adapter size", fmt_bytes(adapter))
