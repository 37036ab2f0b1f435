"""Exact parameter counts from config.json alone, against the published figures.

Each expected number is computed here from the architecture formula, independently of the
estimator (which instantiates the model on the meta device), and the totals are cross-checked
against the counts the model publishers state.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"

# Published totals (model cards / transformers' num_parameters() of the released checkpoints).
PUBLISHED = {
    "llama-3-8b": 8_030_261_248,
    "qwen2.5-0.5b": 494_032_768,
    "mistral-7b-v0.1": 7_241_732_096,
    "gemma-2-2b": 2_614_341_888,
    "phi-3-mini-4k": 3_821_079_552,
    "smollm2-135m": 134_515_008,
}


def _c(name):
    return json.loads((CONFIGS / name / "config.json").read_text())


def formula_total(c: dict) -> int:
    """Parameters of a Llama-family decoder from its config (the published architectures)."""
    h, n_layers, v = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd = c.get("head_dim") or h // heads
    inter = c["intermediate_size"]
    q, k = heads * hd, kv * hd
    attn = h * q + 2 * h * k + q * h
    if c["model_type"] == "qwen2":          # q/k/v projections carry biases
        attn += q + 2 * k
    mlp = 3 * h * inter                      # gate, up, down (Phi-3 fuses gate+up: same count)
    norms = (4 if c["model_type"] == "gemma2" else 2) * h   # Gemma 2 has pre/post norms on both blocks
    emb = v * h * (1 if c.get("tie_word_embeddings", True) else 2)
    return n_layers * (attn + mlp + norms) + emb + h


def formula_lora(c: dict, r: int = 16) -> int:
    """LoRA r on every attention and MLP projection: r × (in + out) per adapted matrix.
    Phi-3's fused qkv_proj and gate_up_proj are adapted as single matrices (out = q+2k, 2·inter)."""
    h, heads = c["hidden_size"], c["num_attention_heads"]
    kv = c.get("num_key_value_heads", heads)
    hd = c.get("head_dim") or h // heads
    inter = c["intermediate_size"]
    q, k = heads * hd, kv * hd
    if c["model_type"] == "phi3":
        mats = [(h, q + 2 * k), (q, h), (h, 2 * inter), (inter, h)]
    else:
        mats = [(h, q), (h, k), (h, k), (q, h), (h, inter), (h, inter), (inter, h)]
    return c["num_hidden_layers"] * sum(r * (i + o) for i, o in mats)


def _cfg(name, method="lora", **method_kw):
    from engine.config import RunConfig

    return RunConfig.from_dict({"model": {"name_or_path": str(CONFIGS / name)},
                                "method": {"name": method, **method_kw}})


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_formula_matches_published(name):
    assert formula_total(_c(name)) == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_total_and_lora_counts_exact(name):
    from engine.estimate.counts import count_params

    out = count_params(_cfg(name, "lora", r=16))
    assert out["total_params"] == PUBLISHED[name]
    assert out["trainable_params"] == formula_lora(_c(name))
    # LoRA weights are kept (and saved) in fp32 by peft.
    assert out["adapter_bytes"] == 4 * out["trainable_params"]


def test_known_lora_figures():
    """The LoRA counts people quote for these models."""
    from engine.estimate.counts import count_params

    assert count_params(_cfg("llama-3-8b", r=16))["trainable_params"] == 41_943_040
    assert count_params(_cfg("phi-3-mini-4k", r=16))["trainable_params"] == 25_165_824


def test_fused_phi3_targets_and_explicit_list():
    from engine.config import ConfigError
    from engine.estimate.counts import count_params

    fused = count_params(_cfg("phi-3-mini-4k", target_modules=["qkv_proj"]))
    assert fused["trainable_params"] == 32 * 16 * (3072 + 3 * 3072)
    with pytest.raises(ConfigError, match="q_proj"):
        count_params(_cfg("phi-3-mini-4k", target_modules=["q_proj"]))


def test_gemma_head_dim_differs_from_hidden_over_heads():
    """Gemma 2 2B: 8 heads × 256 = 2048 ≠ hidden 2304; q_proj is 2304→2048."""
    from engine.estimate.counts import count_params

    out = count_params(_cfg("gemma-2-2b", target_modules=["q_proj"], r=8))
    assert out["trainable_params"] == 26 * 8 * (2304 + 2048)


def test_tied_embeddings_counted_once():
    from engine.estimate.counts import count_params_for
    from engine.models.arch import load_arch

    info = count_params_for(load_arch(_cfg("qwen2.5-0.5b").model), _cfg("qwen2.5-0.5b"))
    assert info.tied and info.total_params == PUBLISHED["qwen2.5-0.5b"]


def test_prompt_method_counts():
    from engine.estimate.counts import count_params

    out = count_params(_cfg("smollm2-135m", "prompt_tuning", num_virtual_tokens=20))
    assert out["trainable_params"] == 20 * 576
    # Prefix tuning without projection: key and value prefixes for every layer.
    out = count_params(_cfg("llama-3-8b", "prefix_tuning", num_virtual_tokens=10))
    assert out["trainable_params"] == 10 * 32 * 2 * 8 * 128
    assert out["adapter_bytes"] == 4 * out["trainable_params"]


# ---- tuners that derive their adapter from the weights (sized on meta through stand-ins) -------

WEIGHT_DERIVED = [
    ("shira", {"r": 4}, "tiny_model_dir"),
    ("shira", {"r": 2, "target_modules": ["q_proj", "down_proj"]}, "tiny_model_dir"),
    ("frod", {}, "tiny_model_dir"),
    ("frod", {"sparse_rate": 0.1, "target_modules": ["v_proj", "up_proj"], "save_projection": False},
     "tiny_model_dir"),
    ("frod", {"bias": "all", "layers_to_transform": [1], "target_modules": ["o_proj", "gate_proj"]},
     "tiny_model_bias"),
]


@pytest.mark.parametrize("method,params,model", WEIGHT_DERIVED,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(WEIGHT_DERIVED)])
def test_weight_derived_tuners_count_on_meta_as_a_real_build(method, params, model, request):
    """SHiRA draws a random mask from the weights, FRoD decomposes them: the meta-device count
    (no weights) must equal what a build on the real weights trains and saves."""
    import torch
    from peft import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from engine.config import RunConfig
    from engine.estimate.counts import count_params_for
    from engine.methods import apply_method
    from engine.models import unique_params
    from engine.models.arch import load_arch

    model_dir = request.getfixturevalue(model)
    cfg = RunConfig.from_dict({"model": {"name_or_path": str(model_dir)}, "method": {"name": method, **params}})
    info = count_params_for(load_arch(cfg.model), cfg)  # bf16, as the estimator sizes a run

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    assert info.total_params == sum(p.numel() for _, p in unique_params(base))
    real = apply_method(base, cfg)
    trainable = [p for _, p in unique_params(real) if p.requires_grad]
    assert info.trainable_params == sum(p.numel() for p in trainable) > 0
    assert sorted(t[2] for t in info.trainable) == sorted(tuple(p.shape) for p in trainable)
    assert sorted(t[1] for t in info.trainable) == sorted(p.element_size() for p in trainable)
    saved = get_peft_model_state_dict(real)
    assert info.adapter_bytes == sum(v.numel() * v.element_size() for v in saved.values())


def test_weight_derived_tuners_count_on_a_large_model_without_memory():
    """The stand-ins hold no storage: SHiRA's indices and FRoD's per-category bases and per-layer
    factors of an 8B model would take GBs (FRoD's tens of GB) if they were materialised."""
    import resource

    from engine.estimate.counts import count_params

    count_params(_cfg("llama-3-8b", "lora"))  # imports and the meta model's own cost, once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    frod = count_params(_cfg("llama-3-8b", "frod"))
    shira = count_params(_cfg("llama-3-8b", "shira", r=16))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, f"counting FRoD and SHiRA on the meta model grew the process by {grown_mib:.0f} MiB"
    c = _c("llama-3-8b")
    h, inter = c["hidden_size"], c["intermediate_size"]
    # Per adapted projection: λ (one per input feature) + the sparse rotation's values (1% of in²).
    # q/k/v/gate/up read the hidden size, o_proj heads × head_dim (= hidden here), down_proj inter.
    per_layer = sum(i + int(i * i * 0.01) for i in (h, h, h, h, h, h, inter))
    assert frod["trainable_params"] == c["num_hidden_layers"] * per_layer
    assert shira["trainable_params"] == formula_lora(c, r=16)  # r·(in+out) entries per layer, as LoRA's r
    # SHiRA saves fp32 values and their int32 (row, column) indices.
    assert shira["adapter_bytes"] == shira["trainable_params"] * (4 + 2 * 4)


def test_adamss_estimate_names_the_missing_package_or_why_it_cannot_be_sized(capsys):
    """AdaMSS needs scikit-learn to build at all; with it, its size follows a clustering of the
    weights. Either way `estimate` says so in one line, with no traceback."""
    import importlib.util

    from engine.cli import main
    from engine.config import ConfigError
    from engine.estimate.counts import count_params

    want = "pip install scikit-learn" if importlib.util.find_spec("sklearn") is None else "k-means clustering"
    with pytest.raises(ConfigError, match=want):
        count_params(_cfg("smollm2-135m", "adamss"))
    assert main(["estimate", str(CONFIGS / "smollm2-135m"), "--set", "method.name=adamss", "--gpu", "24GB"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: method.name: AdaMSS") and want in err and "Traceback" not in err
