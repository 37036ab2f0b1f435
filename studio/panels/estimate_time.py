"""The estimate panel's time section: "Measure time" runs a few real steps of this run's data on
this machine (studio/time_probe.py → ``engine estimate --time-only``) and shows the run's
duration with what it rests on.

Measuring costs a model load and a few steps, so it happens on request, not on every edit; a
result for settings that have changed since is kept but marked as such. While a run trains the
button is off: both would share the machine and each would slow the other (and the figure
would be wrong).
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from engine.estimate.timing import human_duration as fmt_span
from studio.time_probe import TimeProbe
from studio.widgets import InfoGrid, fmt_count, muted

ROWS = ["Per step", "Speed", "The run", "Training", "Evaluation", "Start-up", "In all"]


def _relevant(cfg) -> dict | None:
    """The settings a time depends on (where the run saves does not change it)."""
    if cfg is None:
        return None
    d = cfg.to_dict()
    d.pop("output_dir", None)
    return d


class TimeSection(QGroupBox):
    def __init__(self, parent=None):
        super().__init__("Time on this machine", parent)
        self._cfg = None
        self._measured_for: dict | None = None
        self._result: dict | None = None
        self._run_active = False
        lay = QVBoxLayout(self)
        self.intro = muted("Times a few real steps of this run's own data here, then adds up the whole run.")
        lay.addWidget(self.intro)
        row = QHBoxLayout()
        self.measure_btn = QPushButton("Measure time")
        self.measure_btn.setObjectName("measure-time")
        self.measure_btn.clicked.connect(self.measure)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.cancel_btn.hide()
        row.addWidget(self.measure_btn)
        row.addWidget(self.cancel_btn)
        row.addStretch(1)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setObjectName("time-status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.grid = InfoGrid(ROWS)
        self.grid.hide()
        lay.addWidget(self.grid)
        self.basis = muted("")
        self.basis.setObjectName("time-basis")
        lay.addWidget(self.basis)

        self.probe = TimeProbe(self)
        self.probe.sig_progress.connect(self._on_progress)
        self.probe.sig_done.connect(self._on_done)
        self.probe.sig_failed.connect(self._on_failed)
        self._update_button()

    # -- inputs ------------------------------------------------------------------------------
    def set_config(self, cfg) -> None:
        self._cfg = cfg
        self._update_button()
        self._mark_stale()

    def set_run_active(self, active: bool) -> None:
        self._run_active = active
        if active and self.probe.running:
            self.probe.cancel()
            self._finish_ui()
            self.status.setText("Measurement cancelled: a run started (both would share this machine).")
        self._update_button()

    # -- actions -----------------------------------------------------------------------------
    def measure(self) -> None:
        if self._cfg is None or self._run_active:
            return
        self._measured_for = _relevant(self._cfg)
        # The UI first: a start that fails at once reports through _on_failed, which must win.
        self.measure_btn.setEnabled(False)
        self.cancel_btn.show()
        self.status.setText("Starting: loading the libraries…")
        self.probe.start(self._cfg)

    def cancel(self) -> None:
        self.probe.cancel()
        self._finish_ui()
        self.status.setText("Measurement cancelled.")

    # -- results -----------------------------------------------------------------------------
    def _on_progress(self, text: str) -> None:
        self.status.setText(text + "…")

    def _on_done(self, t: dict) -> None:
        self._finish_ui()
        self._result = t
        pad = t.get("padding_fraction") or 0
        self.grid.set("Per step", f"{t['step_s']:.2f} s")
        self.grid.set("Speed", f"{t['tokens_per_s']:,.0f} tokens/s" if t.get("tokens_per_s") else "—")
        self.grid.set("The run", f"{t['total_steps']:,} steps, {fmt_count(t['tokens'])} tokens"
                      + (f" ({pad:.0%} padding)" if pad > 0.005 else ""))
        self.grid.set("Training", fmt_span(t["train_s"]))
        evals = t.get("evaluations") or 0
        self.grid.set("Evaluation", f"{fmt_span(t['eval_s'])} ({evals} pass{'es' if evals != 1 else ''})"
                      if evals else "none")
        self.grid.set("Start-up", fmt_span(t["startup_s"]))
        self.grid.set("In all", f"about {fmt_span(t['total_s'])}")
        self.grid.show()
        when = time.strftime("%H:%M")
        self.status.setText(f"Measured at {when} on {t['device']} ({t['weights']} weights).")
        if t.get("from_data"):
            sample = (f"{t['measured_examples']:,} of {t['examples']:,}" if t["measured_examples"] < t["examples"]
                      else f"all {t['examples']:,}")
            sizes = ", ".join(str(x["tokens"]) for x in t.get("timed") or [])
            basis = (f"From the token lengths of {sample} training examples; timed {t['steps_timed']} of the "
                     f"run's micro-batches ({sizes} tokens) with attention {t['attention']}.")
        else:
            basis = ("The data could not be read, so every step was assumed full (batch × max_length tokens): "
                     "an upper bound.")
        self.basis.setText(basis + " The live ETA refines this once the run starts.")

    def _on_failed(self, message: str) -> None:
        self._finish_ui()
        self.status.setText(f"Could not measure: {message}")

    def _finish_ui(self) -> None:
        self.cancel_btn.hide()
        self._update_button()

    def _mark_stale(self) -> None:
        if self._result is None:
            return
        stale = _relevant(self._cfg) != self._measured_for
        self.grid.setEnabled(not stale)
        text = self.status.text().split(" Settings changed")[0]
        if stale:
            text += " Settings changed since — measure again for these."
        self.status.setText(text)

    def _update_button(self) -> None:
        busy = self.probe.running
        self.measure_btn.setEnabled(self._cfg is not None and not self._run_active and not busy)
        if self._run_active:
            self.measure_btn.setToolTip("A run is training: a measurement now would share the machine with it.")
        elif self._cfg is None:
            self.measure_btn.setToolTip("Fix the marked settings first.")
        else:
            self.measure_btn.setToolTip("Load the model and time a few real steps of this run "
                                        "(seconds to minutes; the window stays usable).")

    def shutdown(self) -> None:
        self.probe.cancel()
