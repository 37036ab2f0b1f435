"""Full fine-tuning: every weight trains; the result is a complete model folder.

The memory levers are the trainer's own (train.optimizer: adamw_8bit / paged_adamw_8bit keeps
Adam's two moments in 8 bits; train.gradient_checkpointing recomputes activations), so the
method itself only unfreezes everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.methods.incompatible import NO_FP16_TRAINED_WEIGHTS
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field
from engine.methods.storage import load_model_folder


@dataclass
class FullParams(MethodParams):
    """Full fine-tuning: every weight trains. The baseline; pair it with an 8-bit optimizer and
    gradient checkpointing to fit in memory."""

    name: str = name_field("full")


def build(model, cfg, ctx):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def save(model, directory):
    """A complete model folder. Training turned the KV cache off; the saved model is for
    inference, so its config turns it back on (as a merged export's does)."""
    cache = model.config.use_cache
    model.config.use_cache = True
    try:
        model.save_pretrained(str(directory))
    finally:
        model.config.use_cache = cache


def load(base_model, directory):
    """The saved folder is a whole model; ``base_model`` only lends its dtype and device (it may
    be None)."""
    if base_model is None:
        return load_model_folder(directory)
    return load_model_folder(directory, base_model.dtype, str(base_model.device))


def _head(params) -> str:
    return "trained"  # every weight trains, the output head's too


register(MethodSpec(
    incompatible=(NO_FP16_TRAINED_WEIGHTS,),
    name="full", title="Full fine-tuning", family="full", params=FullParams, build=build, can_merge=False,
    save=save, load=load, supports_quantized_base=False, saves_full_model=True, saved_as="model", head=_head,
    suggested_lr=5e-5,
    merge_note="full fine-tuning already saves a complete model; there is no adapter to merge",
    description="Trains every weight: the baseline the other methods are measured against. In fp32 with "
                "AdamW it needs about 4× the weights' memory (weights, gradients, two Adam moments); "
                "adamw_8bit stores the moments in 8 bits."))
