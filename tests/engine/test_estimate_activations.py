"""The activation term against measured saved-tensor bytes of real forward passes.

The estimator fits its activation model on tiny variants of the architecture; here a real
model (the tiny test model, and the demo model's architecture at full width and depth with
random weights) runs one training-mode forward and every tensor autograd saves is counted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"


def _measure_and_predict(model_path, method="lora", batch=2, seq=48, packing=True, **mkw):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.config import RunConfig
    from engine.estimate.activations import Shape, fit_activation_model
    from engine.estimate.trace import trace_model
    from engine.methods import apply_method, get_method
    from engine.models.arch import load_arch

    cfg = RunConfig.from_dict({"model": {"name_or_path": str(model_path)},
                               "method": {"name": method, **mkw}, "train": {"packing": packing}})
    spec = get_method(method)
    arch = load_arch(cfg.model)
    packed = packing and not spec.prompt_based
    # The CPU training setup: fp32 weights, no autocast (engine.models.resolve_dtype on the CPU).
    am = fit_activation_model(arch, cfg, dtype=torch.float32, attn=None, packing=packed,
                              padded=not packed)
    s = Shape(arch.hidden, arch.intermediate, arch.heads, arch.kv_heads, arch.head_dim, arch.vocab,
              arch.layers)
    virtual = spec.virtual_tokens(cfg.method)
    pred = am.predict(s, batch, seq, virtual)
    predicted = pred["layers"] + pred["outside"] + pred["logits_saved"]

    torch.manual_seed(0)
    hf = AutoConfig.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_config(hf, dtype=torch.float32)
    model = apply_method(model, cfg)
    model.train()
    with torch.enable_grad():
        real = trace_model(model, arch.vocab, batch, seq, packing=packed, padded=not packed,
                           prompt_based=spec.prompt_based, virtual=virtual)
    return predicted, real.total_bytes


@pytest.mark.parametrize("method", ["lora", "dora", "prefix_tuning"])
def test_tiny_model_activations_within_10_percent(tiny_model_dir, method):
    predicted, measured = _measure_and_predict(tiny_model_dir, method, batch=3, seq=40)
    assert abs(predicted - measured) / measured < 0.10, (predicted, measured)


@pytest.mark.parametrize("method,packing", [("lora", True), ("prompt_tuning", False)])
def test_demo_architecture_activations_within_10_percent(method, packing):
    """SmolLM2-135M (the demo model's architecture): 30 layers, width 576, vocab 49152."""
    predicted, measured = _measure_and_predict(CONFIGS / "smollm2-135m", method, batch=2, seq=64,
                                               packing=packing)
    assert abs(predicted - measured) / measured < 0.10, (predicted, measured)


def test_fit_is_exact_for_lora():
    """The saved bytes of a LoRA layer are an exact linear form in the sizes (see activations.py)."""
    import torch

    from engine.config import RunConfig
    from engine.estimate.activations import fit_activation_model
    from engine.models.arch import load_arch

    cfg = RunConfig.from_dict({"model": {"name_or_path": str(CONFIGS / "llama-3-8b")}})
    am = fit_activation_model(load_arch(cfg.model), cfg, dtype=torch.bfloat16, attn=None,
                              autocast_dtype=torch.bfloat16, packing=True)
    assert am.residual < 1e-3
