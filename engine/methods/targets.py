"""Which modules a method adapts: per-architecture defaults (what `target_modules: auto` means),
resolving a run file's ``target_modules`` against a model, and the candidates the studio offers."""

from __future__ import annotations

from engine.errors import ConfigError
from engine.methods.spec import TARGET_KINDS
from engine.models import linear_module_names

__all__ = ["TARGET_HELP", "TARGET_KINDS", "auto_targets", "default_targets", "ia3_targets", "resolve_targets",
           "target_candidates"]

TARGET_HELP = ("Which linear layers get adapters: `auto` (attention + MLP projections detected for the "
               "architecture), `all-linear`, or a list of module names such as [q_proj, v_proj].")

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]

# Architectures whose projections have other names. Anything else falls back to the linear
# layers found in the model (minus the output head), which is what `all-linear` does in peft.
_KNOWN = {
    "llama": ATTN + MLP, "mistral": ATTN + MLP, "qwen2": ATTN + MLP, "qwen3": ATTN + MLP,
    "gemma": ATTN + MLP, "gemma2": ATTN + MLP, "gemma3_text": ATTN + MLP, "olmo": ATTN + MLP,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}

# IA³ rescales keys, values and the MLP's down-projection input (the paper's choice).
_IA3 = {
    "phi3": (["qkv_proj", "down_proj"], ["down_proj"]),
    "gpt2": (["c_attn", "c_proj"], ["c_proj"]),
    "gpt_neox": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
}


def default_targets(model_type: str, linear_names: list[str] | None = None) -> list[str]:
    known = _KNOWN.get(model_type)
    if known and (linear_names is None or all(n in linear_names for n in known)):
        return list(known)
    if linear_names:
        return list(linear_names)
    raise ValueError(f"no default target modules for architecture {model_type!r}; list them explicitly")


def ia3_targets(model_type: str, linear_names: list[str]) -> tuple[list[str], list[str]]:
    if model_type in _IA3:
        return _IA3[model_type]
    if all(n in linear_names for n in ("k_proj", "v_proj", "down_proj")):
        return ["k_proj", "v_proj", "down_proj"], ["down_proj"]
    raise ValueError(f"IA³ has no default modules for architecture {model_type!r}; set "
                     "method.target_modules and method.feedforward_modules")


def resolve_targets(value, ctx, path: str = "method.target_modules") -> list[str] | str:
    """A run file's ``target_modules`` (``auto``, ``all-linear`` or names) as peft takes it, checked
    against the model's linear layers (``ctx``: a BuildContext); ConfigError naming ``path``."""
    if value == "all-linear":
        return "all-linear"
    if value == "auto":
        try:
            return default_targets(ctx.model_type, ctx.linear_names)
        except ValueError as e:
            raise ConfigError(path, str(e)) from None
    missing = [t for t in value if t not in ctx.linear_names]
    if missing:
        raise ConfigError(path, f"{', '.join(missing)} not found in this {ctx.model_type} model; its linear "
                          "layers are", value, choices=ctx.linear_names)
    return list(value)


def target_candidates(model) -> dict[str, dict]:
    """For each target kind: the leaf module names a user can pick and what ``auto`` chooses,
    read from a (meta-device) model. LN tuning targets normalisation layers, trainable tokens the
    embedding, ShadowPEFT whole decoder blocks (peft's auto wraps every one; there is no list)."""
    from torch import nn

    norms, embeddings = [], []
    for name, module in model.named_modules():
        leaf, cls = name.rsplit(".", 1)[-1], type(module).__name__
        if isinstance(module, nn.Embedding) and leaf not in embeddings:
            embeddings.append(leaf)
        elif (cls.endswith("Norm") or "LayerNorm" in cls or "RMSNorm" in cls) and leaf and leaf not in norms:
            norms.append(leaf)
    linear = linear_module_names(model)
    model_type = model.config.model_type
    try:
        linear_auto = default_targets(model_type, linear)
    except ValueError:
        linear_auto = []
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING as LN
    norm_auto = [n for n in LN.get(model_type, norms) if n in norms] or norms
    emb = model.get_input_embeddings()
    emb_auto = [n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is emb][:1]
    return {"linear": {"names": linear, "auto": linear_auto},
            "norm": {"names": norms, "auto": norm_auto},
            "embedding": {"names": embeddings, "auto": emb_auto},
            "blocks": {"names": [], "auto": []}}


def auto_targets(spec, ctx, candidates: dict | None = None) -> list[str]:
    """What ``target_modules: auto`` means for method ``spec`` on the model ``ctx`` describes:
    the method's own ``auto_targets`` hook (IA³), else the default of its target kind (linear:
    ``default_targets``; other kinds: ``candidates[kind]["auto"]`` from target_candidates).
    [] when the method adapts no listed modules or nothing fits."""
    try:
        if spec.auto_targets is not None:
            return list(spec.auto_targets(ctx))
        if spec.target_kind == "linear":
            return default_targets(ctx.model_type, ctx.linear_names)
    except ValueError:
        return []
    return list(((candidates or {}).get(spec.target_kind) or {}).get("auto") or [])
