"""The Trainer a run uses: transformers' Trainer with our loss, token counting, events and saves.

* ``make_trainer_class()`` — the Trainer subclass: counts real and trained tokens (tokens/s), uses
  the chunked loss (``engine.training.loss``), and lets methods that save themselves (BitFit,
  selective, bottleneck, full) checkpoint in their own format.
* ``EventCallback`` — the Trainer's hooks turned into ``started``/``step``/``eval``/``checkpoint``
  events, and the stop flag honoured at step ends.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from engine.distributed.runtime import enable_cpu_fsdp, gathered_trainable_state_dict
from engine.events import CheckpointEvent, EvalEvent, StartedEvent, StepEvent
from engine.methods import storage
from engine.training.loss import FastLossMixin
from engine.training.stop import StopFlag, stop_requested_anywhere


def _memory() -> tuple[int | None, int | None]:
    """(bytes allocated, bytes reserved): CUDA's allocator on a GPU, the process's RSS on the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    try:
        import psutil

        return psutil.Process().memory_info().rss, None
    except Exception:
        return None, None


def _peak_memory() -> tuple[int | None, int | None]:
    """(peak bytes, peak reserved bytes) of this process so far: CUDA's max allocated and max
    reserved on a GPU; on the CPU the peak resident set size (getrusage's ru_maxrss, KiB on
    Linux, bytes on macOS) and None. This is what engine.estimate predicts as the peak."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak if sys.platform == "darwin" else peak * 1024), None
    except (ImportError, OSError, ValueError):
        return None, None


def make_callback(reporter, stop: StopFlag, counters: dict, info: dict, before_start=None):
    """A TrainerCallback reporting to ``reporter`` (``info``: the started event's fields;
    ``before_start()``: called when training really begins, before the ``started`` event — the
    run folder is written then)."""
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Turns the Trainer's hooks into our events and honours the stop flag."""

        def on_train_begin(self, args, state, control, **kw):
            if before_start is not None:
                before_start()
            counters["t0"] = time.time()
            counters["start_step"] = state.global_step
            info["total_steps"] = state.max_steps
            reporter.emit(StartedEvent(resumed_from_step=state.global_step, **info))

        def on_step_end(self, args, state, control, **kw):
            if stop_requested_anywhere(stop):
                control.should_training_stop = True
                # A full checkpoint as well as the adapter: Resume then continues exactly here.
                control.should_save = True

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            now = time.time()
            done = state.global_step - counters["start_step"]
            elapsed = now - counters["t0"]
            rate = done / elapsed if elapsed > 0 and done > 0 else None
            remaining = max(0, state.max_steps - state.global_step)
            alloc, reserved = _memory()
            peak, peak_reserved = _peak_memory()
            reporter.emit(StepEvent(
                step=state.global_step, total_steps=state.max_steps, epoch=state.epoch,
                loss=logs.get("loss"), lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                tokens_per_s=(counters["tokens"] / elapsed) if elapsed > 0 else None,
                trained_tokens=counters["trained"], tokens=counters["tokens"],
                mem_allocated=alloc, mem_reserved=reserved, mem_peak=peak, mem_peak_reserved=peak_reserved,
                elapsed_s=elapsed,
                eta_s=(remaining / rate) if rate else None))

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            metrics = metrics or {}
            if "eval_loss" in metrics:
                reporter.emit(EvalEvent(step=state.global_step, eval_loss=metrics["eval_loss"],
                                        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))}))

        def on_save(self, args, state, control, **kw):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            reporter.emit(CheckpointEvent(step=state.global_step, path=str(path)))

    return EventCallback()


def make_resume_callback(factor: float = 1.0):
    """A TrainerCallback that puts a resumed run's learning rate where its schedule says, once the
    checkpoint's optimizer and schedule are loaded.

    The checkpoint restores the learning rate its last step left behind, and the old peak: a
    changed ``train.lr`` (``factor`` = new / old) would silently lose to the old peak, and a run
    extended past its old end (``train.max_steps`` raised) would take its next step at the old
    schedule's final rate (0 for a linear decay). So the peak is scaled by ``factor`` and each
    group's rate is computed again from the schedule (laid out over the new total) at the
    resumed step."""
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import TrainerCallback

    class ResumeSchedule(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            if optimizer is None or lr_scheduler is None or state.global_step == 0:
                return
            if hasattr(lr_scheduler, "base_lrs"):
                lr_scheduler.base_lrs = [b * factor for b in lr_scheduler.base_lrs]
            for group in optimizer.param_groups:
                if "initial_lr" in group:
                    group["initial_lr"] = group["initial_lr"] * factor
            if isinstance(lr_scheduler, LambdaLR):  # every schedule transformers makes
                rates = [base * fn(lr_scheduler.last_epoch)
                         for fn, base in zip(lr_scheduler.lr_lambdas, lr_scheduler.base_lrs)]
            else:
                rates = [g["lr"] * factor for g in optimizer.param_groups]
            for group, rate in zip(optimizer.param_groups, rates):
                group["lr"] = rate
            lr_scheduler._last_lr = list(rates)

    return ResumeSchedule()


def make_trainer_class():
    """The Trainer subclass (built on first use: importing transformers costs seconds)."""
    from transformers import Trainer

    class StudioTrainer(FastLossMixin, Trainer):
        """Trainer that counts real (non-padding) and trained tokens for tokens/s."""

        counters: dict = {}
        warmup_ratio: float = 0.0   # train.warmup_ratio

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            # train.warmup_ratio is a fraction of the run's optimizer steps. transformers reads a
            # float warmup_steps below 1 as a ratio but 1.0 as one step, and warmup_ratio is
            # gone in v5; so the steps are counted here, where the run's total is known.
            self.args.warmup_steps = math.ceil(num_training_steps * self.warmup_ratio)
            return super().create_scheduler(num_training_steps, optimizer)

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if enable_cpu_fsdp(self.accelerator):  # FSDP on CPU ranks (gloo): see its docstring
                self.is_fsdp_enabled = True

        def save_model(self, output_dir=None, _internal_call=False):
            """Under FSDP every checkpoint also gets a standard peft adapter, gathered from the
            shards onto rank 0 (the Trainer writes one only for FULL_STATE_DICT, and then gathers
            the frozen base as well). Collective: every rank calls it."""
            if not self.is_fsdp_enabled:
                return super().save_model(output_dir, _internal_call)
            sd = gathered_trainable_state_dict(self.model_wrapped, self.accelerator)
            if self.args.should_save:
                self._save(output_dir or self.args.output_dir, state_dict=sd)
            return None

        def training_step(self, model, inputs, *args, **kwargs):
            ids = inputs.get("input_ids")
            mask = inputs.get("attention_mask")
            if ids is not None:
                n = int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())
                self.counters["tokens"] += n
            labels = inputs.get("labels")
            if labels is not None:
                self.counters["trained"] += int((labels != -100).sum())
            return super().training_step(model, inputs, *args, **kwargs)

        # The length-grouped sampler reads the lengths prepare_data already has (Examples.lengths),
        # instead of reading every example's tokens to measure them, as the Trainer does for data
        # that is not a datasets.Dataset.
        def _get_train_sampler(self, train_dataset=None):
            return self._grouped_sampler(train_dataset or self.train_dataset, self.args.train_batch_size
                                         * self.args.gradient_accumulation_steps, None) \
                or super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            import torch

            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return self._grouped_sampler(eval_dataset, self.args.eval_batch_size,
                                         torch.Generator().manual_seed(seed)) or super()._get_eval_sampler(eval_dataset)

        def _grouped_sampler(self, dataset, batch_size, generator):
            if self.args.train_sampling_strategy != "group_by_length" or getattr(dataset, "lengths", None) is None:
                return None
            if self.args.world_size > 1:
                return None  # the Trainer's own distributed handling
            from transformers.trainer_pt_utils import LengthGroupedSampler

            return LengthGroupedSampler(batch_size, lengths=dataset.lengths.tolist(), generator=generator)

        # Methods that save themselves (BitFit, selective, bottleneck, full) checkpoint in their own
        # format: a BitFit checkpoint of a 7B model is its biases (megabytes), not the 14 GB model
        # the Trainer would write, and export/playground read checkpoints like final adapters.
        method_spec = None

        def _save(self, output_dir=None, state_dict=None):
            spec = self.method_spec
            if spec is None or spec.save is None:
                return super()._save(output_dir, state_dict)
            if not self.args.should_save:
                return None
            out = Path(output_dir or self.args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            spec.save(self.accelerator.unwrap_model(self.model), out)
            return None

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            d = Path(resume_from_checkpoint)
            meta = storage.read_meta(d) if (d / storage.ADAPTER_CONFIG).exists() else {}
            if storage.STUDIO_KEY not in meta:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            target = self.accelerator.unwrap_model(model if model is not None else self.model)
            storage.restore_tensors(target, storage.read_tensors(d), d)
            return None

    return StudioTrainer
