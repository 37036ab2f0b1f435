"""Runs that watch themselves: Trainer callbacks for the divergence guard, early stopping with
the best state kept, and sample answers at every evaluation.

Each is a plain ``transformers.TrainerCallback`` built by a factory here (transformers is
imported on first use: it costs seconds) and needs nothing from our Trainer subclass, so any
Trainer — TRL's preference trainers included — can take them:

* :func:`divergence_guard` — stops the run when a logged loss or gradient norm is NaN/Inf, or the
  loss stays above ``factor`` × its running minimum for ``steps`` logged steps, and puts the last
  good weights back before anything is saved;
* :func:`early_stopping` — watches one evaluation metric; keeps the best state (``save_best``)
  and stops after ``patience`` evaluations without improvement;
* :func:`sample_answers` — answers the sample prompts at every evaluation, adds exact match,
  token F1 and the user metric to the evaluation's metrics, and hands the samples to the
  ``eval`` event.

Why not transformers' own EarlyStoppingCallback: it requires ``load_best_model_at_end``, which
saves a full checkpoint (optimizer state included) at every evaluation and replaces the final
weights by the best ones at the end; a run here keeps both ``final`` and ``best`` and writes only
the trained tensors for ``best``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

LOWER_IS_BETTER = ("loss", "nll", "perplexity", "ppl")
SNAPSHOT_LIMIT = 2 << 30   # bytes of trainable parameters the guard keeps a copy of in CPU memory
EMA_KEEP = 0.7             # the guard's running minimum is over an exponential moving average of the loss


def _base():
    from transformers import TrainerCallback

    return TrainerCallback


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def lower_is_better(metric: str, mode: str = "auto") -> bool:
    """Whether a smaller value of ``metric`` is better (``mode`` min/max, or auto from its name)."""
    if mode in ("min", "max"):
        return mode == "min"
    return any(w in metric.lower() for w in LOWER_IS_BETTER)


def metric_value(metrics: dict, metric: str):
    """``metric`` from an evaluation's metrics, with or without the ``eval_`` prefix (None when absent)."""
    if metric in metrics:
        return metrics[metric]
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    return metrics.get(key)


# ---- the divergence guard --------------------------------------------------------------------------

def divergence_lever(cfg) -> str:
    """What to change after a divergence, naming the run file's own values."""
    t = cfg.train
    levers = [f"lower train.lr (now {t.lr:g}; try {t.lr / 10:g})"]
    if t.max_grad_norm <= 0:
        levers.append("turn gradient clipping on (train.max_grad_norm: 1.0)")
    if t.warmup_ratio <= 0:
        levers.append("warm the learning rate up (train.warmup_ratio: 0.05)")
    if str(cfg.model.dtype) == "float16":
        levers.append("train in bfloat16 or float32 (model.dtype), float16 overflows")
    return "The loss diverged: " + "; or ".join(levers) + "."


def divergence_guard(factor: float, steps: int, snapshot_limit: int = SNAPSHOT_LIMIT, log: Callable | None = None):
    """A callback that stops a diverging run and restores its last good weights.

    Which weights are good: the loss logged at step t is computed with the weights *before*
    step t's update, so a sound loss at t vouches for the weights of step t-1, not t. The guard
    keeps two CPU copies of the trainable parameters: ``pending`` (taken at the last log, not yet
    vouched for) and ``good`` (vouched for). A sound log promotes pending to good and takes a new
    pending; an unsound one only replaces pending. A NaN/Inf gradient norm with a sound loss
    vouches for the previous weights and condemns the update. On a trip the good copy is put
    back into the model at once (before the Trainer could save a checkpoint), saving and further
    evaluation are cancelled, and ``tripped`` says why. Methods whose trainable parameters exceed
    ``snapshot_limit`` bytes are not copied: a trip then restores nothing and says so.

    ``tripped`` after a trip: ``{"reason", "step", "restored_step"}`` (restored_step None when
    no good copy was held)."""
    base = _base()

    class DivergenceGuard(base):
        def __init__(self):
            self.factor, self.steps = float(factor), int(steps)
            self.ema = None
            self.running_min = None
            self.streak = 0
            self.pending = self.good = None   # (step, {name: tensor}) or None
            self.tripped: dict | None = None
            self.enabled_copies = True

        def _params(self, model):
            return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

        def _snapshot(self, model, step):
            if not self.enabled_copies:
                return None
            return step, {n: p.detach().to("cpu", copy=True) for n, p in self._params(model)}

        def on_train_begin(self, args, state, control, model=None, **kw):
            size = sum(p.numel() * p.element_size() for _, p in self._params(model)) if model is not None else 0
            self.enabled_copies = model is not None and size <= snapshot_limit
            if model is not None and not self.enabled_copies and log:
                log(f"Divergence guard: the trainable parameters ({size / 2**30:.1f} GiB) are too large to copy; "
                    "a diverged run will stop without restoring earlier weights.")
            self.pending = self._snapshot(model, state.global_step) if model is not None else None

        def _restore(self, model):
            import torch

            if self.good is None or model is None:
                return None
            step, tensors = self.good
            with torch.no_grad():
                for n, p in self._params(model):
                    if n in tensors:
                        p.data.copy_(tensors[n].to(p.device, p.dtype))
            return step

        def _trip(self, reason, state, control, model):
            restored = self._restore(model)
            self.tripped = {"reason": reason, "step": state.global_step, "restored_step": restored}
            control.should_training_stop = True
            control.should_save = False       # never checkpoint diverged optimizer state
            control.should_evaluate = False

        def on_log(self, args, state, control, logs=None, model=None, **kw):
            logs = logs or {}
            if "loss" not in logs or self.tripped is not None:
                return
            loss, gn, step = logs.get("loss"), logs.get("grad_norm"), state.global_step
            if not _finite(loss):
                self._trip(f"diverged: the loss was {_show(loss)} at step {step}", state, control, model)
                return
            sound = self.running_min is None or loss <= self.factor * self.running_min
            if gn is not None and not _finite(gn):
                if sound and self.pending is not None:
                    self.good = self.pending   # the forward was fine: the weights before this update are good
                self._trip(f"diverged: the gradient norm was {_show(gn)} at step {step}", state, control, model)
                return
            if sound:
                self.streak = 0
                self.good = self.pending if self.pending is not None else self.good
                self.ema = loss if self.ema is None else EMA_KEEP * self.ema + (1 - EMA_KEEP) * loss
                self.running_min = self.ema if self.running_min is None else min(self.running_min, self.ema)
            else:
                self.streak += 1
                if self.streak >= self.steps:
                    self._trip(f"diverged: the loss stayed above {self.factor:g} × its running minimum "
                               f"({self.running_min:.4g}) for {self.streak} logged steps (last {loss:.4g} at "
                               f"step {step})", state, control, model)
                    return
            self.pending = self._snapshot(model, step)

    return DivergenceGuard()


def _show(x) -> str:
    return "missing" if x is None else ("NaN" if isinstance(x, float) and math.isnan(x) else str(x))


# ---- early stopping and the best state ------------------------------------------------------------

def early_stopping(metric: str = "eval_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                   save_best: Callable | None = None, warn: Callable | None = None):
    """A callback that tracks ``metric`` over evaluations.

    Each improvement (by more than ``min_delta``; lower or higher is better per ``mode``) calls
    ``save_best(model, step, value)``; after ``patience`` evaluations in a row without one
    (0: never) the run stops and ``stopped_reason`` says why. ``best`` is ``{"metric", "value",
    "step"}`` of the best evaluation so far (None before the first). A metric the evaluation does
    not report is named once through ``warn``."""
    base = _base()
    lower = lower_is_better(metric, mode)

    class EarlyStopping(base):
        def __init__(self):
            # What it watches, readable from outside (tests/engine/test_settings_reach_trainer.py).
            self.metric, self.patience, self.min_delta, self.lower = metric, int(patience), float(min_delta), lower
            self.keeps_best = save_best is not None
            self.best: dict | None = None
            self.bad = 0
            self.stopped_reason: str | None = None
            self._warned = False

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            metrics = metrics or {}
            value = metric_value(metrics, metric)
            if not _finite(value):
                if not self._warned and warn:
                    known = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
                    warn(f"train.early_stopping.metric: the evaluation reports no {metric!r} (it reports {known}); "
                         "early stopping and the best checkpoint are off for this run.")
                self._warned = True
                return
            improved = self.best is None or (value < self.best["value"] - min_delta if lower
                                             else value > self.best["value"] + min_delta)
            if improved:
                self.best = {"metric": metric, "value": float(value), "step": state.global_step}
                self.bad = 0
                if save_best is not None:
                    save_best(model, state.global_step, float(value))
                return
            self.bad += 1
            if patience and self.bad >= patience and not control.should_training_stop:
                self.stopped_reason = (f"early stopping: {metric} did not improve for {self.bad} evaluations "
                                       f"(best {self.best['value']:.4g} at step {self.best['step']})")
                control.should_training_stop = True

    return EarlyStopping()


# ---- the final evaluation --------------------------------------------------------------------------

def evaluate_at_end():
    """A callback that makes the Trainer evaluate after its last step, inside the loop (once, also
    when the evaluation schedule lands there too): the trackers and callbacks see the final
    evaluation before ``on_train_end``, and no second evaluation of the same weights follows."""
    base = _base()

    class EvaluateAtEnd(base):
        def on_step_end(self, args, state, control, **kw):
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_evaluate = True

    return EvaluateAtEnd()


# ---- sample answers ------------------------------------------------------------------------------

def sample_answers(tokenizer, prompts: list[dict], max_new_tokens: int, metric=None, sink: dict | None = None,
                   log_metrics: Callable | None = None, context: Callable | None = None):
    """A callback that answers ``prompts`` (engine.evals.samples) at every evaluation.

    The samples ``[{prompt, reference, answer}]`` go into ``sink["samples"]`` (the eval event
    takes them from there); exact match, token F1 and the user ``metric`` are added to the
    evaluation's metrics as ``eval_<name>`` (so early stopping can watch them) and passed to
    ``log_metrics`` (the Trainer's ``log``: trackers and trainer_state.json get them too).
    ``context()``: the context the answers are generated in (the Trainer's autocast)."""
    import contextlib

    from engine.evals.metrics import score
    from engine.evals.samples import answer_samples

    base = _base()
    sink = sink if sink is not None else {}

    class SampleAnswers(base):
        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            if not prompts or model is None:
                return
            with (context or contextlib.nullcontext)():
                samples = answer_samples(model, tokenizer, prompts, max_new_tokens)
            scores = {f"eval_{k}": v for k, v in score(samples, metric).items()}
            if metrics is not None:
                metrics.update(scores)
            sink["samples"] = samples
            if log_metrics is not None and scores:
                log_metrics(dict(scores))

    return SampleAnswers()
