"""Exact parameter counts from a meta-device instantiation (no weights, no memory).

The architecture is built by transformers on the ``meta`` device, wrapped by the real method
(``engine.methods.apply_method``), and counted. That is what peft and transformers report for
the real model, including tied embeddings (counted once), fused projections (Phi-3's
``qkv_proj``), and head dims that differ from hidden / heads (Gemma).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import ConfigError
from engine.methods import apply_method, for_meta
from engine.models import unique_params
from engine.models.arch import load_arch
from engine.models.quant import is_quantizable
from engine.training.from_adapter import adopted


@dataclass
class ParamInfo:
    total_params: int
    trainable_params: int
    adapter_bytes: int                      # size of the adapter file's tensors
    trainable: list[tuple[int, int, tuple]] = field(default_factory=list)   # (numel, bytes/elem, shape)
    frozen_bytes: int = 0                   # frozen weights as instantiated (unquantized)
    frozen_linear: list[tuple[int, int, int]] = field(default_factory=list)  # (rows, cols, bytes/elem)
    frozen_other: int = 0                   # frozen params outside quantizable linears (elements)
    frozen_other_bytes: int = 0
    frozen_embeddings: int = 0              # of frozen_other: the input embeddings and LM head (elements,
                                            # tied ones once): training.speed keeps them in the compute dtype
    lm_head_dtype_bytes: int = 2
    tied: bool = False


def meta_model(arch, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(arch.hf_config, dtype=dtype)
    except Exception as e:  # an architecture transformers cannot build as a causal LM
        raise ConfigError("model.name_or_path", f"cannot instantiate {arch.model_type!r} as a causal LM: "
                          f"{type(e).__name__}: {e}") from None


def _adapter_bytes(wrapped, trainable_bytes: int) -> int:
    """Bytes of the tensors peft writes to adapter_model.safetensors."""
    import torch

    cfg = getattr(wrapped, "peft_config", {}).get("default")
    if cfg is not None and getattr(cfg, "is_prompt_learning", False):
        # peft saves the prompt encoder's *output* (virtual tokens × width), not its weights.
        enc = wrapped.prompt_encoder["default"]
        n = cfg.num_virtual_tokens * getattr(cfg, "num_transformer_submodules", 1)
        with torch.device("meta"):
            out = enc(torch.arange(n, device="meta").unsqueeze(0))
        return out.numel() * out.element_size()
    try:
        from peft import get_peft_model_state_dict

        sd = get_peft_model_state_dict(wrapped)
        return sum(v.numel() * v.element_size() for v in sd.values())
    except Exception:
        return trainable_bytes


def count_params_for(arch, run_cfg, dtype=None) -> ParamInfo:
    import torch

    dtype = dtype or torch.bfloat16
    model = meta_model(arch, dtype)
    total = sum(p.numel() for _, p in unique_params(model))
    linear = {n + ".weight" for n, m in model.named_modules() if is_quantizable(n, m)}
    out_emb = model.get_output_embeddings()
    head_bytes = out_emb.weight.element_size() if out_emb is not None else 2
    tied = bool(out_emb is not None and model.get_input_embeddings() is not None
                and out_emb.weight is model.get_input_embeddings().weight)
    embedding_ids = {id(m.weight) for m in (model.get_input_embeddings(), out_emb) if m is not None}
    wrapped = _apply(model, run_cfg)
    trainable, frozen_linear = [], []
    frozen_other = frozen_other_bytes = frozen_bytes = frozen_embeddings = 0
    for name, p in unique_params(wrapped):
        if p.requires_grad:
            trainable.append((p.numel(), p.element_size(), tuple(p.shape)))
            continue
        frozen_bytes += p.numel() * p.element_size()
        base = name.replace("base_model.model.", "").replace(".base_layer.", ".")
        if base in linear and p.dim() == 2:
            frozen_linear.append((p.shape[0], p.shape[1], p.element_size()))
        else:
            frozen_other += p.numel()
            frozen_other_bytes += p.numel() * p.element_size()
            if id(p) in embedding_ids:
                frozen_embeddings += p.numel()
    n_train = sum(t[0] for t in trainable)
    t_bytes = sum(t[0] * t[1] for t in trainable)
    return ParamInfo(total_params=total,
                     trainable_params=n_train, adapter_bytes=_adapter_bytes(wrapped, t_bytes),
                     trainable=trainable, frozen_bytes=frozen_bytes, frozen_linear=frozen_linear,
                     frozen_other=frozen_other, frozen_other_bytes=frozen_other_bytes,
                     frozen_embeddings=frozen_embeddings,
                     lm_head_dtype_bytes=head_bytes, tied=tied)


def _apply(model, run_cfg):
    try:
        # As the method can be built without a tokenizer: the parameter shapes are the same.
        return apply_method(model, for_meta(run_cfg))
    except ConfigError:
        raise
    except (ValueError, TypeError, NotImplementedError, KeyError, AttributeError) as e:
        raise ConfigError("method.name", f"{run_cfg.method.name} cannot be applied to this "
                          f"{getattr(model.config, 'model_type', '?')} model: {e}") from None


def count_params(cfg) -> dict:
    """``{total_params, trainable_params, adapter_bytes}`` for a RunConfig, from config.json alone.

    ``total_params`` is the base model's parameter count (what transformers reports);
    ``trainable_params`` what the method trains; ``adapter_bytes`` the size of the tensors the
    saved adapter holds (fp32 LoRA weights by default).
    """
    cfg = adopted(cfg)  # a run continuing an adapter trains the adapter's settings
    info = count_params_for(load_arch(cfg.model), cfg)
    return {"total_params": info.total_params, "trainable_params": info.trainable_params,
            "adapter_bytes": info.adapter_bytes}
