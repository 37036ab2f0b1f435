"""What a model is and which methods and target modules fit it (the studio's model panel and
``peft-studio inspect``), read from config and tokenizer files; no weights are loaded.

Above ``engine.methods`` and ``engine.models``: it asks every registered method whether it can
work with the architecture.
"""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from engine.errors import ConfigError, ModelError
from engine.methods import context_for
from engine.methods.registry import REGISTRY  # every method, including any registered at run time
from engine.methods.targets import auto_targets, default_targets, target_candidates
from engine.models import (
    count_parameters,
    has_weights,
    linear_module_names,
    load_tokenizer,
    resolve_model_config,
    resolve_source,
)


def inspect_model(name_or_path: str, trust_remote_code: bool = False, offline: bool = True) -> dict:
    """What the model panel shows: read from config and tokenizer files, no weights loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    src = resolve_source(name_or_path, offline)
    cfg = resolve_model_config(name_or_path, trust_remote_code, offline)
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
        except Exception as e:
            raise ModelError(f"{src.display}: architecture {getattr(cfg, 'model_type', '?')} is not a causal "
                             f"language model transformers can build ({e}).") from None
    has_template = False
    try:
        tok = load_tokenizer(name_or_path, trust_remote_code, offline)
        has_template = bool(getattr(tok, "chat_template", None))
    except ModelError:
        pass
    linear = linear_module_names(model)
    candidates = target_candidates(model)
    ctx = context_for(model, RunConfig())
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    return {
        "source": src.path,
        "display": src.display,
        "kind": src.kind,
        "architecture": (cfg.architectures or [type(model).__name__])[0],
        "model_type": cfg.model_type,
        "total_params": count_parameters(model),
        "context_length": getattr(cfg, "max_position_embeddings", None),
        "dtype": str(dtype).replace("torch.", "") if dtype else "unknown",
        "has_chat_template": has_template,
        "linear_module_names": linear,
        "default_targets": default_targets(cfg.model_type, linear),
        "target_candidates": candidates,
        # what `target_modules: auto` adapts, per method, asked of each method (IA³ is not LoRA's)
        "auto_targets": {name: auto_targets(spec, ctx, candidates) for name, spec in REGISTRY.items()},
        "unavailable_methods": unavailable_methods(model),
        "has_weights": src.kind == "gguf" or has_weights(Path(src.path)),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "num_layers": getattr(cfg, "num_hidden_layers", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
    }


def unavailable_methods(model) -> dict[str, str]:
    """Methods that cannot work with ``model``'s architecture (a meta-device model will do), each
    with the reason, for the studio to mark before the user picks one: BitFit without biases,
    adaption prompt on a family it does not know, a tuner whose package is missing. Only errors
    about the method itself count; fields the user still has to fill in (token ids) do not."""
    ctx = context_for(model, RunConfig())
    out = {}
    for name, spec in REGISTRY.items():
        if spec.check is None:
            continue
        try:
            spec.check(RunConfig.from_dict({"method": {"name": name}}), ctx)
        except ConfigError as e:
            if e.path == "method.name":
                out[name] = e.message
    return out
