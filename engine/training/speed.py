"""Speed and memory levers applied to a loaded model before training.

* Attention: ``sdpa_varlen`` (engine.models.attention) runs PyTorch SDPA once per packed
  example instead of over a block-diagonal mask. On CUDA with ``flash_attn`` installed,
  flash-attention 2 does the same with its varlen kernel.
* No fp32 copies of frozen embeddings / LM head: peft's k-bit preparation upcasts every
  non-quantized weight to fp32, including the embedding and LM head (2 × vocab × hidden, the
  largest non-quantized tensors). Frozen, they only need the compute dtype (Unsloth's change).

The loss lever lives in engine/training/loss.py.
"""

from __future__ import annotations

from engine.models.attention import VARLEN, register_attention


def flash_attn_usable(model) -> bool:
    import importlib.util

    import torch

    return (torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
            and getattr(model, "dtype", None) in (torch.float16, torch.bfloat16)
            and getattr(model, "_supports_flash_attn", False))


def resolve_attention(model, requested: str, packing: bool) -> str:
    """What `auto` means for this model and run: flash-attention 2 on CUDA when it is installed;
    else sdpa_varlen for packed batches on models whose layers get position_ids (those that
    support flash-attention do); else the model's own default."""
    current = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if requested != "auto":
        return requested
    if flash_attn_usable(model):
        return "flash_attention_2"
    if (packing and current == "sdpa" and getattr(model, "_supports_flash_attn", False)
            and getattr(model, "_supports_sdpa", False)):
        return VARLEN
    return current


def select_attention(model, requested: str, packing: bool) -> str:
    """Set the attention implementation on a loaded (possibly peft-wrapped) model; returns it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    choice = resolve_attention(base, requested, packing)
    if choice == VARLEN:
        register_attention()
    if choice != getattr(base.config, "_attn_implementation", None):
        base.set_attn_implementation(choice)
    return choice


def downcast_frozen_embeddings(model, dtype=None) -> int:
    """Cast frozen input embeddings and LM head back to the compute dtype after peft's k-bit
    preparation upcast them to fp32. Returns the bytes saved. Trainable ones stay fp32 (the
    optimizer needs full-precision master weights); fp32 models are left alone."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dtype = dtype or getattr(base.config, "dtype", None) or getattr(base.config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if dtype not in (torch.float16, torch.bfloat16):
        return 0
    saved, seen = 0, set()
    for mod in (base.get_input_embeddings(), base.get_output_embeddings()):
        w = getattr(mod, "weight", None)
        if w is None or id(w) in seen or w.requires_grad or w.dtype != torch.float32:
            continue
        seen.add(id(w))
        saved += w.numel() * 2
        w.data = w.data.to(dtype)
    return saved


def configure(model, cfg, packing: bool, quantized: bool, log=None) -> str:
    """Apply the model-side levers of a run; returns the attention implementation in use."""
    log = log or (lambda msg: None)
    attn = select_attention(model, cfg.model.attn_implementation, packing)
    log(f"Attention: {attn}" + (" (per packed example)" if attn == VARLEN else ""))
    if quantized and not cfg.model.upcast_embeddings:
        saved = downcast_frozen_embeddings(model)
        if saved:
            log(f"Kept frozen embeddings/LM head in the compute dtype (saves {saved / 2**20:.0f} MiB).")
    return attn
