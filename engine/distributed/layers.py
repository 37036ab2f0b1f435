"""Which module classes FSDP wraps one by one: the model's decoder layers.

transformers lists, for each architecture, the blocks that must stay whole on one device
(``PreTrainedModel._no_split_modules``, e.g. ``["LlamaDecoderLayer"]``); the same blocks are
FSDP's natural units (accelerate's ``TRANSFORMER_BASED_WRAP`` uses that list by default). Read
from a meta-device model, so only config.json is needed.
"""

from __future__ import annotations


def decoder_layer_classes(model) -> list[str]:
    """``model``'s no-split module classes that really occur in it (some lists name classes of
    sibling architectures). Raises ConfigError when there is none to wrap."""
    from engine.errors import ConfigError

    names = list(getattr(model, "_no_split_modules", None) or [])
    present = {type(m).__name__ for m in model.modules()}
    found = [n for n in names if n in present]
    if not found:
        raise ConfigError("train.distributed.fsdp.auto_wrap", f"{type(model).__name__} names no decoder-layer "
                          "class to shard by (transformers' _no_split_modules); give the layer class, "
                          "e.g. LlamaDecoderLayer")
    return found


def decoder_layer_classes_for(model_cfg) -> list[str]:
    """The decoder-layer classes of the model a run file names, from its config.json alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models import resolve_model_config

    hf = resolve_model_config(model_cfg.name_or_path, model_cfg.trust_remote_code, model_cfg.offline)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf, trust_remote_code=model_cfg.trust_remote_code)
    return decoder_layer_classes(model)
