"""Train one run: setup → main → fit (litgpt's split), on transformers' Trainer.

The loop is transformers' Trainer; what is ours is the wiring: the run directory, events
(step/eval/checkpoint/...), stop at a step boundary on request, checkpoints and resume, and
failures turned into a `failed` event with a hint instead of a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.events import JsonlSink, MultiReporter

ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
EVENTS_FILE = "events.jsonl"
RUN_FILE = "run.yaml"

_OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit",
               "paged_adamw_8bit": "paged_adamw_8bit", "adafactor": "adafactor", "sgd": "sgd"}


class StopFlag:
    """Set from another thread (stdin reader, signal handler, the studio); read at step ends."""

    def __init__(self):
        self._ev = threading.Event()
        self.reason = ""

    def set(self, reason: str = "stop requested") -> None:
        self.reason = self.reason or reason
        self._ev.set()

    def is_set(self) -> bool:
        return self._ev.is_set()


@dataclass
class RunResult:
    status: str                      # finished | stopped | failed
    run_dir: Path
    adapter_dir: Path | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") in ("0", "-1")


def hint_for(exc: BaseException, cfg: RunConfig | None = None) -> str:
    """A concrete next step for the user, by the kind of failure."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if "out of memory" in text or "outofmemory" in text or isinstance(exc, MemoryError):
        levers = []
        if cfg is not None:
            if cfg.train.batch_size > 1:
                levers.append(f"a smaller batch (train.batch_size {cfg.train.batch_size} → "
                              f"{max(1, cfg.train.batch_size // 2)}, with train.grad_accum × 2 to keep the "
                              "effective batch)")
            if not cfg.train.gradient_checkpointing:
                levers.append("gradient checkpointing (train.gradient_checkpointing: true)")
            if cfg.method.name in ("lora", "dora"):
                levers.append("qlora (a 4-bit base, about a quarter of the weight memory)")
            levers.append(f"a shorter data.max_length (now {cfg.data.max_length})")
            if cfg.train.optimizer == "adamw_torch":
                levers.append("an 8-bit optimizer (train.optimizer: adamw_8bit)")
        else:
            levers = ["a smaller batch", "gradient checkpointing", "qlora"]
        return "Out of memory. Try " + "; or ".join(levers) + "."
    if isinstance(exc, ConfigError):
        return "Fix the named field in the run file and start again."
    if "nan" in text or "inf" in text:
        return "The loss diverged: lower train.lr or enable gradient clipping (train.max_grad_norm)."
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return "Check that the path exists and that you may write to the run folder."
    return "See the log for details; if it persists, report it with the run's events.jsonl."


def find_checkpoint(run_dir: Path, resume_from: str | None) -> str | None:
    if not resume_from:
        return None
    if resume_from == "latest":
        ckpts = sorted((run_dir / CHECKPOINT_DIR).glob("checkpoint-*"),
                       key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
        complete = [c for c in ckpts if (c / "trainer_state.json").exists()]
        if not complete:
            raise ConfigError("train.resume_from", f"no complete checkpoint in {run_dir / CHECKPOINT_DIR}",
                              resume_from)
        return str(complete[-1])
    p = Path(resume_from)
    if not (p / "trainer_state.json").exists():
        raise ConfigError("train.resume_from", "is not a checkpoint folder (no trainer_state.json)", resume_from)
    return str(p)


def save_adapter_atomic(model, tokenizer, target: Path, extra_files: dict[str, str] | None = None,
                        state_dict: dict | None = None) -> Path:
    """Save into a temporary sibling folder, then rename: a crash never leaves half an adapter.
    ``state_dict``: the gathered tensors of a sharded run (peft keeps the adapter's keys)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        extra = {"state_dict": state_dict} if state_dict is not None else {}
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}-old-{int(time.time() * 1000)}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _memory() -> tuple[int | None, int | None]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    try:
        import psutil

        return psutil.Process().memory_info().rss, None
    except Exception:
        return None, None


def _make_callback(reporter, stop: StopFlag, counters: dict, info: dict):
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Turns the Trainer's hooks into our events and honours the stop flag."""

        def on_train_begin(self, args, state, control, **kw):
            counters["t0"] = time.time()
            counters["start_step"] = state.global_step
            info["total_steps"] = state.max_steps
            reporter.emit("started", resumed_from_step=state.global_step, **info)

        def on_step_end(self, args, state, control, **kw):
            if _stop_requested_anywhere(stop):
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
            reporter.emit(
                "step", step=state.global_step, total_steps=state.max_steps, epoch=state.epoch,
                loss=logs.get("loss"), lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                tokens_per_s=(counters["tokens"] / elapsed) if elapsed > 0 else None,
                trained_tokens=counters["trained"], tokens=counters["tokens"],
                mem_allocated=alloc, mem_reserved=reserved, elapsed_s=elapsed,
                eta_s=(remaining / rate) if rate else None)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            metrics = metrics or {}
            if "eval_loss" in metrics:
                reporter.emit("eval", step=state.global_step, eval_loss=metrics["eval_loss"],
                              metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))})

        def on_save(self, args, state, control, **kw):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            reporter.emit("checkpoint", step=state.global_step, path=str(path))

    return EventCallback()


def _stop_requested_anywhere(stop: StopFlag) -> bool:
    """Only rank 0 hears `stop` (stdin, signals); under `accelerate launch` every rank must
    agree to stop at the same step or the others would hang in the next collective."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stop.is_set()
    import torch

    device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1.0 if stop.is_set() else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    # Decide on the agreed value only: a request that arrives on this rank after the all-reduce
    # (the stdin thread) must wait for the next step, or this rank would stop alone and the
    # others would hang (or fail) in their next collective.
    agreed = flag.item() > 0
    if agreed:
        stop.set("stop requested on another rank")
    return agreed


def _make_trainer_class():
    from transformers import Trainer

    from engine.loss import FastLossMixin  # the chunked/fused loss when fast_loss is set

    class StudioTrainer(FastLossMixin, Trainer):
        """Trainer that counts real (non-padding) and trained tokens for tokens/s."""

        counters: dict = {}

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            from engine.distributed.runtime import enable_cpu_fsdp

            if enable_cpu_fsdp(self.accelerator):  # FSDP on CPU ranks (gloo): see its docstring
                self.is_fsdp_enabled = True

        def save_model(self, output_dir=None, _internal_call=False):
            """Under FSDP every checkpoint also gets a standard peft adapter, gathered from the
            shards onto rank 0 (the Trainer writes one only for FULL_STATE_DICT, and then gathers
            the frozen base as well). Collective: every rank calls it."""
            from engine.distributed.runtime import gathered_trainable_state_dict

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
            from engine.methods import saved

            d = Path(resume_from_checkpoint)
            meta = saved.read_meta(d) if (d / saved.ADAPTER_CONFIG).exists() else {}
            if saved.STUDIO_KEY not in meta:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            target = self.accelerator.unwrap_model(model if model is not None else self.model)
            saved.restore_tensors(target, saved.read_tensors(d), d)
            return None

    return StudioTrainer


def _stdin_listener(stop: StopFlag) -> None:
    def run():
        try:
            for line in sys.stdin:
                if line.strip().lower() in ("stop", "quit", "q"):
                    stop.set("stop requested")
                    return
        except (OSError, ValueError):
            return

    if sys.stdin is not None and not sys.stdin.closed:
        threading.Thread(target=run, name="stdin-stop", daemon=True).start()


def install_signal_handlers(stop: StopFlag) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C means now
        stop.set(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def train(cfg: RunConfig, sinks=(), stop: StopFlag | None = None, listen_stdin: bool = False,
          base_dir: Path | None = None) -> RunResult:
    """Run one training job to completion, stop or failure. Never raises for run failures:
    they become a `failed` event and a RunResult with status failed."""
    stop = stop or StopFlag()
    run_dir = Path(cfg.output_dir).expanduser()
    if not run_dir.is_absolute() and base_dir is not None:
        run_dir = base_dir / run_dir
    reporter = MultiReporter(*sinks)
    reporter.enabled = is_main_process()
    jsonl = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if reporter.enabled:
            jsonl = JsonlSink(run_dir / EVENTS_FILE)
            reporter.add(jsonl)
    except OSError as e:
        reporter.emit("failed", error=f"Cannot create the run folder {run_dir}: {e}",
                      hint="Choose an output_dir you can write to.")
        return RunResult("failed", run_dir, error=str(e))
    if listen_stdin:
        _stdin_listener(stop)
    try:
        return _fit(cfg, run_dir, reporter, stop)
    except KeyboardInterrupt:
        reporter.emit("failed", error="interrupted", hint="The run was interrupted twice; resume from the "
                      "last checkpoint with train.resume_from: latest.")
        return RunResult("failed", run_dir, error="interrupted")
    except Exception as e:  # every failure becomes an event, never a bare traceback
        hint = hint_for(e, cfg)
        reporter.emit("failed", error=f"{e}" if isinstance(e, (ConfigError,)) or _is_user_error(e)
                      else f"{type(e).__name__}: {e}", hint=hint, traceback=traceback.format_exc())
        return RunResult("failed", run_dir, error=str(e), hint=hint)
    finally:
        if reporter.enabled:
            _index_run(run_dir, cfg)
        reporter.close()


def _is_user_error(e: BaseException) -> bool:
    from engine.models import ModelError

    try:
        from engine.data import DataError
    except ImportError:  # pragma: no cover
        DataError = ()  # noqa: N806
    return isinstance(e, (ModelError, DataError))


def _index_run(run_dir: Path, cfg: RunConfig) -> None:
    try:
        from engine.runs import RunIndex

        RunIndex().record(run_dir)
    except Exception as e:  # the index is a convenience; never fail a run over it
        print(f"peft-studio: could not update the run index: {e}", file=sys.stderr)


def _fit(cfg: RunConfig, run_dir: Path, reporter: MultiReporter, stop: StopFlag) -> RunResult:
    cfg.validate()
    from engine.methods import get_method, preflight

    spec = get_method(cfg.method.name)
    # Everything checkable from config files is checked before weights load (seconds, not minutes).
    preflight(cfg)
    checkpoint = find_checkpoint(run_dir, cfg.train.resume_from)
    if reporter.enabled:
        cfg.save(run_dir / RUN_FILE)
    from engine.distributed.runtime import places_weights, world

    _start_distributed(cfg, reporter)

    import torch
    from transformers import set_seed

    from engine.data import make_collator, prepare_data
    from engine.models import load_tokenizer, resolve_source

    set_seed(cfg.train.seed)
    src = resolve_source(cfg.model.name_or_path, cfg.model.offline)
    reporter.log(f"Model: {src.display}")
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
    packing = cfg.train.packing
    if packing and spec.prompt_based:
        reporter.warn(f"{spec.title} prepends virtual tokens to every example, so packing is turned off "
                      "for this run.")
        packing = False
    data = prepare_data(cfg.data, tokenizer, seed=cfg.train.seed, reporter=reporter,
                        extra_prompt_tokens=spec.virtual_tokens(cfg.method))
    if not data.train:
        raise ConfigError("data.path", "no usable training examples remain after preparation")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    from engine.build import build_for_training

    built = build_for_training(cfg, device, packing, tokenizer_path=src.path, log=reporter.log,
                               sharded=places_weights(cfg.train.distributed))
    model, total_params, quant = built.model, built.total_params, built.quantization
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    reporter.log(f"{spec.title}: {trainable:,} trainable of {total_params:,} parameters "
                 f"({100 * trainable / max(total_params, 1):.3f}%)")

    args = _training_args(cfg, run_dir, has_eval=bool(data.eval), packing=packing)
    # Tokens are counted from this process's first step (so a resumed run reports its own speed).
    counters = {"tokens": 0, "trained": 0, "t0": time.time(), "start_step": 0}
    info = {"config": cfg.to_dict(), "total_params": total_params, "trainable_params": trainable,
            "device": device, "run_dir": str(run_dir), "method": spec.name, "quantization": quant,
            "train_examples": len(data.train), "eval_examples": len(data.eval),
            "data_format": data.format, "pid": os.getpid(),
            "strategy": cfg.train.distributed.strategy, "world_size": world().size}
    trainer_cls = _make_trainer_class()
    trainer_cls.counters = counters
    trainer_cls.method_spec = spec
    optimizers = (None, None)
    if cfg.train.loraplus_lr_ratio > 0:
        optimizers = (_loraplus_optimizer(model, cfg), None)
    from engine.distributed.measure import make_callback as make_held_bytes_callback
    from engine.methods.peft_auto import trainer_callbacks  # AdaLoRA's schedule follows the global step

    trainer = trainer_cls(
        model=model, args=args, train_dataset=_ListDataset(data.train),
        eval_dataset=_ListDataset(data.eval) if data.eval else None,
        data_collator=make_collator(tokenizer, packing=packing, max_length=cfg.data.max_length),
        callbacks=[_make_callback(reporter, stop, counters, info), *trainer_callbacks(model, checkpoint),
                   make_held_bytes_callback(counters)],
        optimizers=optimizers,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):  # our events replace their prints
        trainer.remove_callback(cb)
    # What accelerate really set up (NO, MULTI_GPU, MULTI_CPU, FSDP, DEEPSPEED): a run file asking
    # for FSDP that ends up replicated would otherwise go unnoticed.
    info["distributed_type"] = str(getattr(trainer.accelerator.distributed_type, "value",
                                           trainer.accelerator.distributed_type))
    trainer.fast_loss = built.loss
    reporter.log(built.loss_note)
    if checkpoint:
        reporter.log(f"Resuming from {checkpoint}")
    out = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {"train_loss": out.training_loss, "global_step": trainer.state.global_step}
    if counters.get("rank_bytes"):
        # Parameters, gradients and optimizer state each rank held (engine.distributed.measure).
        metrics["rank_bytes"] = counters["rank_bytes"]
    stopped = stop.is_set() and trainer.state.global_step < trainer.state.max_steps
    if data.eval and not stopped:
        ev = trainer.evaluate()
        metrics["eval_loss"] = ev.get("eval_loss")
    last_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if last_losses:
        metrics["final_loss"] = last_losses[-1]
    adapter_dir = run_dir / ADAPTER_DIR
    from engine.distributed.runtime import gathered_trainable_state_dict, is_sharded

    # Sharded (FSDP/ZeRO): every rank hands its slice to rank 0, which writes a whole adapter.
    gathered = gathered_trainable_state_dict(trainer.model_wrapped, trainer.accelerator) \
        if is_sharded(trainer.accelerator) else None
    if trainer.is_world_process_zero():  # one writer; the other ranks wait for it
        from engine.methods.saved import saveable  # non-peft methods (BitFit, bottleneck…) save themselves

        model_out = trainer.accelerator.unwrap_model(trainer.model)
        save_adapter_atomic(saveable(model_out, spec), tokenizer, adapter_dir, state_dict=gathered)
    trainer.accelerator.wait_for_everyone()
    if stopped:
        reporter.emit("stopped", step=trainer.state.global_step, adapter_dir=str(adapter_dir),
                      run_dir=str(run_dir), reason=stop.reason, metrics=metrics)
        return RunResult("stopped", run_dir, adapter_dir, metrics)
    reporter.emit("finished", adapter_dir=str(adapter_dir), run_dir=str(run_dir), metrics=metrics,
                  step=trainer.state.global_step)
    return RunResult("finished", run_dir, adapter_dir, metrics)


def _start_distributed(cfg: RunConfig, reporter: MultiReporter) -> None:
    """The run file's train.distributed in force in this rank, before any weights load
    (engine.distributed.runtime explains the order)."""
    from engine.distributed.preflight import check_strategy
    from engine.distributed.runtime import (
        apply_strategy,
        cuda_available,
        die_with_launcher,
        init_process_group,
        world,
    )

    d = cfg.train.distributed
    check_strategy(cfg, on_gpu=cuda_available())
    if d.strategy != "single" and not world().launched:
        raise ConfigError("train.distributed.strategy", f"{d.strategy} runs as several processes: start it "
                          "with `peft-studio launch run.yaml` (or `accelerate launch -m engine train "
                          "run.yaml`), or set strategy: single", d.strategy)
    if not world().launched:
        return
    die_with_launcher()
    layers: list[str] = []
    if d.strategy == "fsdp":
        from engine.distributed.layers import decoder_layer_classes_for

        layers = decoder_layer_classes_for(cfg.model)
    from engine.methods import effective_quantization

    for msg in apply_strategy(d, quantized=bool(effective_quantization(cfg)), layer_classes=layers):
        reporter.warn(msg)
    init_process_group(d)


class _ListDataset:
    """A plain indexable dataset of tokenized examples (the Trainer needs only len/getitem)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _training_args(cfg: RunConfig, run_dir: Path, has_eval: bool, packing: bool):
    from transformers import TrainingArguments

    t = cfg.train
    eval_on = has_eval and t.eval_steps > 0
    kwargs = dict(
        output_dir=str(run_dir / CHECKPOINT_DIR),
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else 1e9,
        optim=_OPTIMIZERS[t.optimizer], seed=t.seed, data_seed=t.seed,
        num_train_epochs=t.epochs, max_steps=t.max_steps,
        logging_steps=t.logging_steps, logging_first_step=True,
        eval_strategy="steps" if eval_on else "no", eval_steps=t.eval_steps if eval_on else None,
        save_strategy="steps" if t.save_steps > 0 else "no", save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit, report_to=[], remove_unused_columns=False,
        dataloader_num_workers=t.dataloader_workers, disable_tqdm=True,
        dataloader_pin_memory=_cuda(),
        # Without it, ranks on a machine with no GPU each train alone (accelerate's state is NO
        # unless told "cpu"), instead of as one data-parallel run over gloo.
        use_cpu=not _cuda(),
        train_sampling_strategy="group_by_length" if (t.group_by_length and not packing) else "random",
        label_names=["labels"], torch_compile=t.torch_compile,
        # fp32 on the CPU; on GPUs bf16/fp16 autocast follows the weights' dtype.
        bf16=_use_bf16(cfg), fp16=_use_fp16(cfg),
        lr_scheduler_kwargs={"min_lr_rate": 0.1} if t.scheduler == "cosine_with_min_lr" else {},
    )
    return TrainingArguments(**kwargs)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _use_bf16(cfg) -> bool:
    import torch

    from engine.models import resolve_dtype

    return torch.cuda.is_available() and resolve_dtype(cfg.model.dtype, "cuda") == torch.bfloat16


def _use_fp16(cfg) -> bool:
    import torch

    from engine.models import resolve_dtype

    return torch.cuda.is_available() and resolve_dtype(cfg.model.dtype, "cuda") == torch.float16


def _loraplus_optimizer(model, cfg):
    """LoRA+ (different lr for B matrices) through peft's own helper."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    opt_cls = torch.optim.AdamW
    if cfg.train.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        import bitsandbytes as bnb

        opt_cls = bnb.optim.PagedAdamW8bit if cfg.train.optimizer.startswith("paged") else bnb.optim.AdamW8bit
    return create_loraplus_optimizer(model=model, optimizer_cls=opt_cls, lr=cfg.train.lr,
                                     loraplus_lr_ratio=cfg.train.loraplus_lr_ratio,
                                     weight_decay=cfg.train.weight_decay)
