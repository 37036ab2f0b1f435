"""Train one run: setup → main → fit (litgpt's split), on transformers' Trainer.

* :func:`train` (setup) — the reporter and its sinks; every failure becomes a ``failed`` event,
  never a bare traceback.
* :func:`main` — everything checkable from config files before weights load (preflight: the
  method against the options and the architecture, a resume against the run it continues), then
  the tokenizer, the data and the model exactly as training uses them.
* :func:`fit` — the Trainer, the loop, the final evaluation and the saved adapter.

The run folder (``run.yaml``, ``events.jsonl``, the index row) is written only once training
really starts (:class:`RunFolder`): a run refused in preflight, or a resume refused because a
setting changed, leaves an existing run exactly as it was and creates no folder.

The loop is transformers' Trainer; what is ours is the wiring: the run directory, events, stop at
a step boundary on request, checkpoints and resume (``engine.training.resume``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import RunConfig
from engine.data import chat_template_for, make_collator, prepare_data
from engine.data.preference import prepare_preference_data
from engine.distributed.measure import make_callback as held_bytes_callback
from engine.distributed.runtime import (
    gathered_trainable_state_dict,
    is_sharded,
    places_weights,
    start_in_rank,
    world,
)
from engine.errors import ConfigError, UserError, error_field
from engine.events import FailedEvent, FinishedEvent, JsonlSink, LogEvent, MultiReporter, StoppedEvent
from engine.methods import get_method, preflight
from engine.methods.storage import save_adapter_atomic, saveable
from engine.models import BaseTokenizer, load_tokenizer, resolve_source
from engine.runs import RunIndex
from engine.tasks import get_task
from engine.training.arguments import loraplus_optimizer, training_args, training_kwargs
from engine.training.build import build_for_training
from engine.training.checks import forgetting_base, forgetting_tuned, setup_checks
from engine.training.from_adapter import adopt as adopt_adapter
from engine.training.hints import hint_for
from engine.training.preference import check_task, make_preference_trainer, reference_note
from engine.training.resume import AlreadyComplete, find_checkpoint, plan_resume  # noqa: F401 (re-exported)
from engine.training.stop import StopFlag
from engine.training.stop import listen_stdin as start_stdin_listener
from engine.training.trackers import check_trackers, trackers
from engine.training.trainer import make_callback, make_resume_callback, make_trainer_class, studio_mixin
from engine.training.watch import divergence_lever

ADAPTER_DIR = "adapter"
EVENTS_FILE = "events.jsonl"
RUN_FILE = "run.yaml"


@dataclass
class RunResult:
    """How a run ended. ``status``: finished | stopped | failed | complete (a resume of a run that
    had already trained every step: nothing was done). ``user_error``: the failure is the user's
    to fix (a UserError: the CLI exits 2), not the project's."""

    status: str
    run_dir: Path
    adapter_dir: Path | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    user_error: bool = False
    reason: str | None = None                # why a stopped run stopped (StoppedEvent.reason)
    forgetting: dict | None = None           # the forgetting check (FinishedEvent.forgetting)
    best_dir: Path | None = None             # the best state, when the run kept one


def is_main_process() -> bool:
    """Rank 0 (or not distributed): the process that reports and saves."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") in ("0", "-1")


# ---- setup --------------------------------------------------------------------------------------

class RunFolder:
    """The run folder's files, written only once training really starts.

    Until :meth:`open`, events are kept in memory (the reporter's other sinks — stdout, the
    studio — see them at once); ``open`` creates the folder, writes ``run.yaml``, and appends the
    kept events and every later one to ``events.jsonl``. A run that fails or is refused before
    it starts leaves no folder, and an existing run's files untouched."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = run_dir, enabled
        self.kept: list[dict] = []
        self.sink: JsonlSink | None = None

    @property
    def opened(self) -> bool:
        return self.sink is not None

    def emit(self, event: dict) -> None:
        if self.sink is not None:
            self.sink.emit(event)
        else:
            self.kept.append(event)

    def open(self, cfg: RunConfig) -> None:
        """Create the folder (raises OSError), write the resolved run file, start events.jsonl."""
        if not self.enabled or self.sink is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.run_dir / RUN_FILE)
        self.sink = JsonlSink(self.run_dir / EVENTS_FILE)
        for event in self.kept:
            self.sink.emit(event)
        self.kept = []

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def train(cfg: RunConfig, sinks=(), stop: StopFlag | None = None, listen_stdin: bool = False,
          base_dir: Path | None = None) -> RunResult:
    """Run one training job to completion, stop or failure. Never raises for run failures:
    they become a `failed` event and a RunResult with status failed (``user_error`` when the
    user can fix it). A resume of a run that is already complete returns status ``complete``
    and changes nothing."""
    stop = stop or StopFlag()
    run_dir = Path(cfg.output_dir).expanduser()
    if not run_dir.is_absolute() and base_dir is not None:
        run_dir = base_dir / run_dir
    reporter = MultiReporter(*sinks)
    reporter.enabled = is_main_process()
    folder = RunFolder(run_dir, enabled=reporter.enabled)
    reporter.add(folder)
    if listen_stdin:
        start_stdin_listener(stop)
    try:
        return main(cfg, run_dir, reporter, stop, folder)
    except AlreadyComplete as e:  # not a failure: nothing to do, and nothing is written
        reporter.emit(LogEvent(message=str(e)))
        # The run's own terminal state, for clients waiting for one (the studio); it goes to the
        # reporter's streams only: the run folder is not opened, so its files stay as they were.
        adapter = run_dir / ADAPTER_DIR
        reporter.emit(FinishedEvent(adapter_dir=str(adapter) if adapter.exists() else None, run_dir=str(run_dir),
                                    metrics={"global_step": e.done}, step=e.done))
        return RunResult("complete", run_dir, adapter if adapter.exists() else None, {"global_step": e.done})
    except KeyboardInterrupt:
        reporter.emit(FailedEvent(error="interrupted", hint="The run was interrupted twice; resume from the "
                                  "last checkpoint with train.resume_from: latest."))
        return RunResult("failed", run_dir, error="interrupted")
    except Exception as e:  # every failure becomes an event, never a bare traceback
        hint = hint_for(e, cfg)
        if isinstance(e, UserError):  # the user's to fix: the message says it all
            field = error_field(e)
            reporter.emit(FailedEvent(error=str(e), hint=hint, **({"field": field} if field else {})))
        else:  # our fault: keep the traceback for the report
            reporter.emit(FailedEvent(error=f"{type(e).__name__}: {e}", hint=hint,
                                      traceback=traceback.format_exc()))
        return RunResult("failed", run_dir, error=str(e), hint=hint, user_error=isinstance(e, UserError))
    finally:
        reporter.close()
        if folder.opened:
            _index_run(run_dir)


def _index_run(run_dir: Path) -> None:
    try:
        RunIndex().record(run_dir)
    except Exception as e:  # the index is a convenience; never fail a run over it
        print(f"peft-studio: could not update the run index: {e}", file=sys.stderr)


def check_writable(run_dir: Path) -> None:
    """ConfigError naming output_dir when the run folder could not be created or written (checked
    without creating anything)."""
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError("output_dir", f"cannot write the run folder {run_dir}: {probe} is not a folder you "
                          "may write to; choose another output_dir")


# ---- main ---------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """What fit() needs: the run's model, tokenizer and data as training uses them."""

    cfg: RunConfig
    spec: object                     # the MethodSpec
    run_dir: Path
    checkpoint: str | None           # the checkpoint to resume from
    lr_factor: float                 # train.lr now / the lr the checkpoint's schedule was made with
    tokenizer: object
    data: object                     # engine.data.PreparedData (preference tasks: PreferenceData)
    packing: bool
    device: str
    built: object                    # engine.training.build.Built


def main(cfg: RunConfig, run_dir: Path, reporter: MultiReporter, stop: StopFlag,
         folder: RunFolder | None = None) -> RunResult:
    """Check, load and prepare (raises on failure; train() reports it), then fit."""
    folder = folder or RunFolder(run_dir, enabled=False)
    cfg.validate()
    # A run that continues a saved adapter takes its method settings (run.yaml records them).
    cfg, _start, start_notes = adopt_adapter(cfg)
    spec = get_method(cfg.method.name)
    # Everything checkable from config files is checked before weights load (seconds, not minutes),
    # and before the run folder is touched.
    preflight(cfg)
    check_trackers(cfg.train.report_to)
    if cfg.eval.metric:
        from engine.evals.metrics import load_metric

        load_metric(cfg.eval.metric)  # a bad eval.metric fails now, not at the first evaluation
    check_task(cfg, spec)
    task = get_task(cfg.train.task)
    checkpoint, lr_factor = plan_resume(cfg, run_dir)
    if folder.enabled:
        check_writable(run_dir)
    # train.distributed in force in this rank before any weights load (engine.distributed.runtime).
    start_in_rank(cfg, reporter.warn)

    import torch
    from transformers import set_seed

    set_seed(cfg.train.seed)
    src = resolve_source(cfg.model.name_or_path, cfg.model.offline)
    reporter.log(f"Model: {src.display}")
    for note in start_notes:
        reporter.log(note)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline,
                               log=reporter.log)
    packing = cfg.train.packing
    if packing and task.is_preference:
        reporter.log(f"{task.title} keeps each prompt with its answers (TRL's preference batches): no packing.")
        packing = False
    if packing and not spec.can_pack:
        reporter.warn(f"{spec.title} prepends virtual tokens to every example, so packing is turned off "
                      "for this run (train.packing).")
        packing = False
    if task.is_preference:
        data = prepare_preference_data(cfg.data, task.data, tokenizer, seed=cfg.train.seed, reporter=reporter)
        for line in data.report.lines():
            reporter.log(line)
        if tokenizer.chat_template is None:  # TRL renders conversations with the tokenizer's template
            tokenizer.chat_template = chat_template_for(tokenizer)
    else:
        data = prepare_data(cfg.data, tokenizer, seed=cfg.train.seed, reporter=reporter,
                            extra_prompt_tokens=spec.virtual_tokens(cfg.method))
    if not data.train:
        raise ConfigError("data.path", "no usable training examples remain after preparation")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    built = build_for_training(cfg, device, packing, tokenizer_path=src.path, log=reporter.log,
                               sharded=places_weights(cfg.train.distributed))
    prepared = Prepared(cfg, spec, run_dir, checkpoint, lr_factor, tokenizer, data, packing, device, built)
    return fit(prepared, reporter, stop, folder)


# ---- fit ----------------------------------------------------------------------------------------

def fit(p: Prepared, reporter: MultiReporter, stop: StopFlag, folder: RunFolder | None = None) -> RunResult:
    """Train ``p`` to the end (or a stop), evaluate, save the adapter and report. The run folder
    is opened (``run.yaml`` written) when the Trainer begins its first step."""
    folder = folder or RunFolder(p.run_dir, enabled=False)
    cfg, spec, run_dir, data = p.cfg, p.spec, p.run_dir, p.data
    model, total_params = p.built.model, p.built.total_params
    trainable = sum(x.numel() for x in model.parameters() if x.requires_grad)
    reporter.log(f"{spec.title}: {trainable:,} trainable of {total_params:,} parameters "
                 f"({100 * trainable / max(total_params, 1):.3f}%)")

    # Tokens are counted from this process's first step (so a resumed run reports its own speed).
    counters = {"tokens": 0, "trained": 0, "t0": time.time(), "start_step": 0}
    info = {"config": cfg.to_dict(), "total_params": total_params, "trainable_params": trainable,
            "device": p.device, "run_dir": str(run_dir), "method": spec.name, "quantization": p.built.quantization,
            "train_examples": len(data.train), "eval_examples": len(data.eval) if data.eval else 0,
            "data_format": data.format, "pid": os.getpid(),
            "strategy": cfg.train.distributed.strategy, "world_size": world().size}
    optimizers = (None, None)
    if cfg.train.loraplus_lr_ratio > 0:
        optimizers = (loraplus_optimizer(model, cfg), None)
    method_callbacks = spec.trainer_callbacks(model, p.checkpoint) if spec.trainer_callbacks else []
    sharded = cfg.train.distributed.shards
    checks = setup_checks(p, reporter, counters, sharded)
    for note in checks.notes:
        reporter.log(note)
    with trackers(cfg.train.report_to, run_dir):
        return _fit_with(p, reporter, stop, folder, counters, info, checks, method_callbacks, optimizers)


def _fit_with(p, reporter, stop, folder, counters, info, checks, method_callbacks, optimizers):
    """fit()'s second half, inside the trackers' environment (engine.training.trackers)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    cfg, spec, run_dir, data, model = p.cfg, p.spec, p.run_dir, p.data, p.built.model
    # The sample answers run before the event callback (the eval event carries them); early
    # stopping and the divergence guard after it (engine.training.watch).
    callbacks = [*checks.before_events(),
                 make_callback(reporter, stop, counters, info, before_start=lambda: folder.open(cfg)),
                 *checks.after_events(), make_resume_callback(p.lr_factor), *method_callbacks,
                 held_bytes_callback(counters)]
    task = get_task(cfg.train.task)
    info["task"] = task.name
    if task.is_preference:  # TRL's trainer for the task, with the same callbacks (engine/training/preference.py)
        trainer = make_preference_trainer(p, training_kwargs(cfg, run_dir, bool(data.eval), False), callbacks,
                                          optimizers, counters, studio_mixin())
        ref_note = reference_note(cfg, model)
        if ref_note:
            reporter.log(ref_note)
    else:
        args = training_args(cfg, run_dir, has_eval=bool(data.eval), packing=p.packing)
        trainer_cls = make_trainer_class()
        trainer_cls.counters = counters
        trainer_cls.method_spec = spec
        trainer_cls.warmup_ratio = cfg.train.warmup_ratio
        trainer = trainer_cls(
            # Examples: sequences over memory-mapped Arrow rows (engine/data/examples.py), read a batch at a time.
            model=model, args=args, train_dataset=data.train,
            eval_dataset=data.eval if data.eval else None,
            data_collator=make_collator(p.tokenizer, packing=p.packing, max_length=cfg.data.max_length),
            callbacks=callbacks, optimizers=optimizers,
        )
    for cb in (PrinterCallback, ProgressCallback):  # our events replace their prints
        trainer.remove_callback(cb)
    checks.attach(trainer)
    # What accelerate really set up (NO, MULTI_GPU, MULTI_CPU, FSDP, DEEPSPEED): a run file asking
    # for FSDP that ends up replicated would otherwise go unnoticed.
    info["distributed_type"] = str(getattr(trainer.accelerator.distributed_type, "value",
                                           trainer.accelerator.distributed_type))
    if not task.is_preference:  # TRL computes the preference losses with its own fused head
        trainer.fast_loss = p.built.loss
        reporter.log(p.built.loss_note)
    if p.checkpoint:
        reporter.log(f"Resuming from {p.checkpoint}")
    base = forgetting_base(p, reporter, cfg.train.distributed.shards, trainer.is_world_process_zero(), checks.compute)
    out = trainer.train(resume_from_checkpoint=p.checkpoint)
    metrics = {"train_loss": out.training_loss, "global_step": trainer.state.global_step}
    if counters.get("rank_bytes"):
        # Parameters, gradients and optimizer state each rank held (engine.distributed.measure).
        metrics["rank_bytes"] = counters["rank_bytes"]
    stopped = stop.is_set() and trainer.state.global_step < trainer.state.max_steps
    itself = checks.stopped_itself()   # the divergence guard or early stopping
    if itself is not None:
        stopped = True
        stop.set(itself[0])
    if data.eval and not stopped:
        # The last step's evaluation ran inside the loop (watch.evaluate_at_end), before the
        # Trainer's on_train_end closed the trackers; evaluating here would reach them after that.
        final = [h for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == trainer.state.global_step]
        metrics["eval_loss"] = final[-1]["eval_loss"] if final else trainer.evaluate().get("eval_loss")
    last_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if last_losses:
        metrics["final_loss"] = last_losses[-1]
    adapter_dir = run_dir / ADAPTER_DIR
    # Sharded (FSDP/ZeRO): every rank hands its slice to rank 0, which writes a whole adapter.
    gathered = gathered_trainable_state_dict(trainer.model_wrapped, trainer.accelerator) \
        if is_sharded(trainer.accelerator) else None
    model_out = trainer.accelerator.unwrap_model(trainer.model)
    # A diverged run holds its last good weights again (the guard restored them), unless they were
    # too large to copy: then nothing is saved over the last checkpoint.
    keep = not (checks.diverged and checks.guard.tripped.get("restored_step") is None)
    if trainer.is_world_process_zero() and keep:  # one writer; the other ranks wait for it
        # Methods that are not peft tuners (BitFit, bottleneck, full…) save themselves.
        # The base's tokenizer files unchanged: padding is a training choice, not part of the model.
        base_tok = BaseTokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
        save_adapter_atomic(saveable(model_out, spec), base_tok, adapter_dir, state_dict=gathered)
    trainer.accelerator.wait_for_everyone()
    forgetting = None
    if not checks.diverged and trainer.is_world_process_zero():
        forgetting = forgetting_tuned(p, model_out, reporter, base, checks.compute)
    best = checks.best
    if best is not None:
        metrics.update(best_metric=best["metric"], best_value=best["value"], best_step=best["step"])
    extra = {"forgetting": forgetting} if forgetting is not None else {}
    if checks.best_dir is not None:
        extra["best_checkpoint"] = str(checks.best_dir)
    result = dict(run_dir=run_dir, adapter_dir=adapter_dir if keep else None, metrics=metrics,
                  forgetting=forgetting, best_dir=checks.best_dir)
    if stopped:
        hint = divergence_lever(cfg) if checks.diverged else ""
        if checks.diverged:
            restored = checks.guard.tripped.get("restored_step")
            hint += (f" The adapter holds the last good weights (step {restored})." if restored is not None
                     else " No earlier weights were kept (too large to copy); resume from the last checkpoint.")
        reporter.emit(StoppedEvent(step=trainer.state.global_step, adapter_dir=str(adapter_dir) if keep else None,
                                   run_dir=str(run_dir), reason=stop.reason, metrics=metrics,
                                   **({"hint": hint} if hint else {}), **extra))
        return RunResult("stopped", hint=hint or None, reason=stop.reason, **result)
    reporter.emit(FinishedEvent(adapter_dir=str(adapter_dir), run_dir=str(run_dir), metrics=metrics,
                                step=trainer.state.global_step, **extra))
    return RunResult("finished", **result)
