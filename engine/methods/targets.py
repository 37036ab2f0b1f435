"""Per-architecture default target modules (what `target_modules: auto` means)."""

from __future__ import annotations

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
