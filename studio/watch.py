"""What the monitor warns about while a run trains: gradient-norm spikes and overfitting.

Pure logic over the run's events (the same ones whether live or re-read from events.jsonl), so
the warnings come back identical after a restart. Each warning has the step it belongs to; the
monitor marks it on the plot at that step.

* **Gradient-norm spike**: a logged grad-norm above ``SPIKE_FACTOR`` × the median of the previous
  ``WINDOW`` logged grad-norms (at least ``MIN_HISTORY`` of them). A spike is warned about once;
  another within ``WINDOW`` // 2 steps belongs to the same episode.
* **Overfitting**: the eval loss rose at ``RISES`` evaluations in a row while the training loss
  (an exponential moving average, weight ``EMA_KEEP`` on the past) fell over the same span.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

SPIKE_FACTOR = 5.0
WINDOW = 20
MIN_HISTORY = 5
RISES = 2
EMA_KEEP = 0.9


@dataclass(frozen=True)
class RunWarning:
    step: int
    kind: str        # "grad_spike" | "overfitting"
    message: str
    plot: str        # the monitor plot it is marked on: "grad" | "loss"


class RunWatch:
    """Feed it events in order; ``feed`` returns the warnings each event raises."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.grads: list[float] = []
        self.last_spike: int | None = None
        self.ema: float | None = None
        self.evals: list[tuple[int, float, float | None]] = []   # (step, eval loss, train EMA then)
        self.warned_overfit_from: int | None = None
        self.warnings: list[RunWarning] = []

    def feed(self, ev: dict) -> list[RunWarning]:
        kind = ev.get("event")
        new: list[RunWarning] = []
        if kind == "started" and not ev.get("resumed_from_step"):
            self.reset()
        elif kind == "step":
            new += self._step(ev)
        elif kind == "eval" and _finite(ev.get("eval_loss")):
            new += self._eval(int(ev.get("step") or 0), float(ev["eval_loss"]))
        self.warnings += new
        return new

    def _step(self, ev: dict) -> list[RunWarning]:
        out = []
        step = int(ev.get("step") or 0)
        loss = ev.get("loss")
        if _finite(loss):
            self.ema = loss if self.ema is None else EMA_KEEP * self.ema + (1 - EMA_KEEP) * loss
        g = ev.get("grad_norm")
        if not _finite(g):
            return out
        recent = self.grads[-WINDOW:]
        if len(recent) >= MIN_HISTORY:
            median = statistics.median(recent)
            if median > 0 and g > SPIKE_FACTOR * median and (
                    self.last_spike is None or step - self.last_spike > WINDOW // 2):
                self.last_spike = step
                out.append(RunWarning(step, "grad_spike", f"Gradient norm spiked at step {step}: {g:.3g}, "
                                      f"{g / median:.0f}× the recent median ({median:.3g}). If the loss jumps too, "
                                      "lower the learning rate or keep gradient clipping on (Max grad norm).",
                                      "grad"))
        self.grads.append(float(g))
        return out

    def _eval(self, step: int, loss: float) -> list[RunWarning]:
        self.evals = [e for e in self.evals if e[0] != step] + [(step, loss, self.ema)]
        i = len(self.evals) - 1
        while i > 0 and self.evals[i][1] > self.evals[i - 1][1]:  # back to where this rise began
            i -= 1
        first = self.evals[i]
        rises = len(self.evals) - 1 - i
        t0, t1 = first[2], self.ema
        # one warning per rising stretch: a stretch that goes on is the same warning
        if rises < RISES or self.warned_overfit_from == first[0] or t0 is None or t1 is None or not t1 < t0:
            return []
        self.warned_overfit_from = first[0]
        return [RunWarning(step, "overfitting", f"Possible overfitting at step {step}: the eval loss rose for "
                           f"{rises} evaluations ({first[1]:.4g} → {loss:.4g}) while the training loss fell "
                           f"({t0:.4g} → {t1:.4g}). Consider early stopping (Early stopping › patience), fewer "
                           "steps or more data.", "loss")]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
