"""What a run measures and watches beside the loss, wired for one run (engine.training.run.fit).

* the sample prompts answered at every evaluation (engine.evals.samples, watch.sample_answers);
* the divergence guard, early stopping and the best state (watch.divergence_guard,
  watch.early_stopping), the best state saved in ``<run>/best``;
* the forgetting check: the base side before training (cached per base model), the tuned side
  at the end (engine.evals.forgetting).

Rank 0 measures forgetting alone (a forward on the unwrapped model has no collectives); under
FSDP/DeepSpeed, where no rank holds the whole model, samples and the forgetting check are
skipped with a note (``peft-studio eval RUN`` measures the saved adapter afterwards).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.distributed.runtime import gathered_trainable_state_dict, is_sharded
from engine.methods.storage import save_adapter_atomic, saveable
from engine.models import BaseTokenizer
from engine.training import watch

BEST_DIR = "best"
BEST_FILE = "best.json"


@dataclass
class RunChecks:
    """The callbacks of one run and what they found."""

    samples: object | None = None          # watch.sample_answers callback
    final_eval: object | None = None       # watch.evaluate_at_end callback
    guard: object | None = None            # watch.divergence_guard callback
    stopper: object | None = None          # watch.early_stopping callback
    best_dir: Path | None = None           # written when the best state was saved
    trainer: object | None = None
    notes: list[str] = field(default_factory=list)

    def before_events(self) -> list:
        """Callbacks that must run before the event callback (they add to the eval event)."""
        return [c for c in (self.samples,) if c is not None]

    def after_events(self) -> list:
        return [c for c in (self.stopper, self.guard, self.final_eval) if c is not None]

    def attach(self, trainer) -> None:
        """The Trainer, once built: sample metrics are logged through it, the best state saved from it."""
        self.trainer = trainer

    def compute(self):
        """The context the checks' own forward passes run in: the Trainer's autocast (accelerate's,
        bf16 on the CPU too), so that they compute as training does. Without it a QLoRA model in
        bfloat16 on the CPU (fp32 norms, bf16 weights) fails with "float != BFloat16"."""
        import contextlib

        return self.trainer.accelerator.autocast() if self.trainer is not None else contextlib.nullcontext()

    def stopped_itself(self) -> tuple[str, str] | None:
        """(reason, hint) when the guard or early stopping ended the run, else None."""
        if self.guard is not None and self.guard.tripped:
            return self.guard.tripped["reason"], ""
        if self.stopper is not None and self.stopper.stopped_reason:
            return self.stopper.stopped_reason, ""
        return None

    @property
    def diverged(self) -> bool:
        return bool(self.guard is not None and self.guard.tripped)

    @property
    def best(self) -> dict | None:
        return self.stopper.best if self.stopper is not None else None


def setup_checks(p, reporter, counters: dict, sharded: bool) -> RunChecks:
    """The callbacks for run ``p`` (engine.training.run.Prepared)."""
    from engine.evals.metrics import load_metric
    from engine.evals.samples import preference_prompts, sample_prompts
    from engine.tasks import get_task

    cfg, t = p.cfg, p.cfg.train
    checks = RunChecks()
    if t.divergence.enabled:
        checks.guard = watch.divergence_guard(t.divergence.factor, t.divergence.steps, log=reporter.log)
    has_eval = bool(p.data.eval)
    if has_eval:
        checks.final_eval = watch.evaluate_at_end()
        es = t.early_stopping
        # Only a run that evaluates during training has a best state that may differ from final.
        save = _best_saver(checks, p) if t.keep_best and t.eval_steps > 0 else None
        checks.stopper = watch.early_stopping(es.metric, es.patience, es.min_delta, es.mode, save_best=save,
                                              warn=reporter.warn)
        if p.checkpoint and t.keep_best:
            _seed_best(checks.stopper, p.run_dir / BEST_DIR, es.metric)
    elif t.early_stopping.patience:
        reporter.warn("train.early_stopping.patience is set but the run has no validation data, so it never "
                      "evaluates; set data.validation_split or data.validation_path.")
    metric = load_metric(cfg.eval.metric)
    prompts = []
    if has_eval and cfg.eval.samples > 0:
        if sharded:
            checks.notes.append("Sample answers are skipped: under FSDP/DeepSpeed no process holds the whole model.")
        else:
            if get_task(t.task).is_preference and not cfg.eval.prompts:
                # Preference data is not read by the SFT pipeline: its held-out pairs give the prompts.
                prompts = preference_prompts(p.data.eval, cfg.eval.samples)
            else:
                prompts = sample_prompts(cfg.eval, cfg.data, cfg.train.seed)
            if not prompts:
                reporter.log("Samples: the held-out examples have no prompt to answer (plain text); set "
                             "eval.prompts to see answers at every evaluation.")
    if prompts or metric is not None:
        checks.samples = watch.sample_answers(
            p.tokenizer, prompts, cfg.eval.max_new_tokens, metric, sink=counters,
            log_metrics=lambda m: checks.trainer.log(m) if checks.trainer is not None else None,
            context=checks.compute)
    return checks


def _best_saver(checks: RunChecks, p):
    target = p.run_dir / BEST_DIR

    def save(model, step: int, value: float) -> None:
        trainer = checks.trainer
        if trainer is None:
            return
        # Sharded: every rank hands its slice to rank 0, which writes a whole adapter (collective).
        gathered = gathered_trainable_state_dict(trainer.model_wrapped, trainer.accelerator) \
            if is_sharded(trainer.accelerator) else None
        if trainer.is_world_process_zero():
            meta = {"metric": checks.stopper.best["metric"] if checks.stopper.best else None, "value": value,
                    "step": step}
            # The base's tokenizer files unchanged, as for the final adapter (engine.training.run).
            base_tok = BaseTokenizer(p.cfg.model.name_or_path, p.cfg.model.trust_remote_code, p.cfg.model.offline)
            save_adapter_atomic(saveable(trainer.accelerator.unwrap_model(trainer.model), p.spec), base_tok,
                                target, extra_files={BEST_FILE: json.dumps(meta)}, state_dict=gathered)
            checks.best_dir = target

    return save


def _seed_best(stopper, best_dir: Path, metric: str) -> None:
    """A resumed run competes with the best state its earlier part kept."""
    try:
        meta = json.loads((best_dir / BEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if meta.get("metric") == metric and isinstance(meta.get("value"), (int, float)):
        stopper.best = {"metric": metric, "value": float(meta["value"]), "step": int(meta.get("step") or 0)}


# ---- forgetting ---------------------------------------------------------------------------------

def forgetting_base(p, reporter, sharded: bool, main_process: bool, context=None):
    """The base side of the forgetting check, from the cache or measured now with the method off
    (before the first step), inside ``context()`` (RunChecks.compute: the Trainer's autocast).
    Returns (key, Figures) or None when the check does not run here."""
    import contextlib

    context = context or contextlib.nullcontext
    from engine.evals import forgetting as fg

    cfg = p.cfg
    if not cfg.eval.forgetting or not main_process:
        return None
    if sharded:
        reporter.log("Forgetting check skipped: under FSDP/DeepSpeed no process holds the whole model; run "
                     "`peft-studio eval RUN` on the saved adapter.")
        return None
    settings = fg.Settings.of(cfg.eval)
    if not settings.passages and not settings.prompts:
        return None
    key = fg.base_key(cfg.model, p.built.quantization, p.device, settings)
    base = fg.cached_base(key)
    if base is not None:
        reporter.log(f"Forgetting check: the base model's figures come from the cache ({fg.cache_path(key)}).")
        return settings, base
    reporter.log(f"Forgetting check: measuring the base model on {settings.passages} general passages and "
                 f"{settings.prompts} general prompts (once per base model; cached).")
    with fg.base_side(p.built.model, p.spec) as model, context():
        base = fg.measure(model, p.tokenizer, settings)
    fg.store_base(key, base)
    reporter.log(f"Forgetting check: base general-text NLL {base.nll if base.nll is not None else float('nan'):.4f} "
                 f"nats/token ({base.seconds:.0f} s).")
    return settings, base


def forgetting_tuned(p, model, reporter, base, context=None) -> dict | None:
    """The forgetting dict of the finished event: the tuned ``model`` against the base side
    (measured inside ``context()``, as forgetting_base)."""
    import contextlib

    context = context or contextlib.nullcontext
    from engine.evals import forgetting as fg

    if base is None:
        return None
    settings, base_figures = base
    with context():
        tuned = fg.measure(model, p.tokenizer, settings)
    result = fg.compare(base_figures, tuned, settings)
    reporter.log(f"Forgetting check: {fg.describe(result)} ({tuned.seconds:.0f} s).")
    return result
