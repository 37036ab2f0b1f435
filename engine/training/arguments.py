"""transformers' TrainingArguments and optimizers for a RunConfig."""

from __future__ import annotations

from pathlib import Path

from engine.models import resolve_dtype

CHECKPOINT_DIR = "checkpoints"

# run-file names → transformers' `optim` names
OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit",
              "paged_adamw_8bit": "paged_adamw_8bit", "adafactor": "adafactor", "sgd": "sgd"}


def training_args(cfg, run_dir: Path, has_eval: bool, packing: bool):
    """The Trainer's arguments for ``cfg`` writing checkpoints under ``run_dir``."""
    from transformers import TrainingArguments

    return TrainingArguments(**training_kwargs(cfg, run_dir, has_eval, packing))


def training_kwargs(cfg, run_dir: Path, has_eval: bool, packing: bool) -> dict:
    """``TrainingArguments``' keyword arguments for ``cfg`` (TRL's configs subclass it and take
    the same ones: engine/training/preference.py)."""
    t = cfg.train
    eval_on = has_eval and t.eval_steps > 0
    kwargs = dict(
        output_dir=str(run_dir / CHECKPOINT_DIR),
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, lr_scheduler_type=t.scheduler,
        # train.warmup_ratio becomes steps where the run's total is known (trainer.create_scheduler).
        warmup_steps=0, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else 1e9,
        optim=OPTIMIZERS[t.optimizer], seed=t.seed, data_seed=t.seed,
        num_train_epochs=t.epochs, max_steps=t.max_steps,
        logging_steps=t.logging_steps, logging_first_step=True,
        eval_strategy="steps" if eval_on else "no", eval_steps=t.eval_steps if eval_on else None,
        save_strategy="steps" if t.save_steps > 0 else "no", save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit, report_to=list(t.report_to) or "none",
        run_name=run_dir.name, remove_unused_columns=False,
        dataloader_num_workers=t.dataloader_workers, disable_tqdm=True,
        dataloader_pin_memory=_cuda(),
        # Without it, ranks on a machine with no GPU each train alone (accelerate's state is NO
        # unless told "cpu"), instead of as one data-parallel run over gloo.
        use_cpu=not _cuda(),
        train_sampling_strategy="group_by_length" if (t.group_by_length and not packing) else "random",
        label_names=["labels"], torch_compile=t.torch_compile,
        # Autocast follows the weights' dtype: bf16 on GPUs and on the CPU (model.dtype: bfloat16 there
        # means bf16 compute too: without autocast fp32 norms and bf16 weights meet in one matmul —
        # the "float != BFloat16" crash of QLoRA with bfloat16 on the CPU); fp16 on GPUs only.
        bf16=_use_bf16(cfg), fp16=_use_fp16(cfg),
        lr_scheduler_kwargs={"min_lr_rate": 0.1} if t.scheduler == "cosine_with_min_lr" else {},
    )
    return kwargs


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _use_bf16(cfg) -> bool:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_dtype(cfg.model.dtype, device) == torch.bfloat16


def _use_fp16(cfg) -> bool:
    import torch

    return torch.cuda.is_available() and resolve_dtype(cfg.model.dtype, "cuda") == torch.float16


def loraplus_optimizer(model, cfg):
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
