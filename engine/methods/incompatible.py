"""Incompatibilities several methods share (``MethodSpec.incompatible``), each measured here.

* ``NO_CHECKPOINTING`` — key/value-prefix methods (prefix tuning, Cartridge): peft raises "does
  not work with gradient checkpointing" when it builds them on a model that has it on.
* ``NO_FP16_TRAINED_WEIGHTS`` — methods whose trainable tensors are the model's own (BitFit,
  selective, full) or kept in the model's dtype by peft (LN tuning, ShadowPEFT, Adaption prompt):
  with model.dtype float16 on a GPU, the Trainer's fp16 mixed precision refuses float16 gradients
  ("Attempting to unscale FP16 gradients", PyTorch's GradScaler). Measured on an H200 with
  transformers 5.17 / peft 0.21: every other registered method trained 2 steps in float16, and
  every method in bfloat16.
"""

from __future__ import annotations

from engine.methods.spec import Incompatible


def _fp16_on_cuda(cfg) -> bool:
    """model.dtype resolves to float16 on a GPU (``auto`` does on GPUs without bfloat16)."""
    import torch

    from engine.models import resolve_dtype

    return resolve_dtype(cfg.model.dtype, "cuda") == torch.float16


NO_CHECKPOINTING = Incompatible(
    "train.gradient_checkpointing", (True,),
    "peft hands the learned prefix to every layer as its attention cache, which gradient checkpointing "
    "turns off",
    "train.gradient_checkpointing: false (save memory with a smaller train.batch_size or data.max_length), or "
    "prompt_tuning / lora, which work with it")

NO_FP16_TRAINED_WEIGHTS = Incompatible(
    "model.dtype", ("float16", "auto"),
    "the tensors it trains stay in the model's float16, and fp16 mixed precision cannot train float16 "
    "weights (PyTorch's gradient scaler refuses their gradients)",
    "model.dtype: bfloat16 (GPUs since Ampere) or float32", device="cuda", when=_fp16_on_cuda)
