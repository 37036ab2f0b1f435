"""Speed and memory levers applied to a loaded model before training.

* Attention: ``sdpa_varlen`` runs PyTorch SDPA once per packed example. A packed row of several
  examples otherwise goes through SDPA with a block-diagonal (T × T) mask, which computes every
  cross-example block only to mask it away: for a row of n examples of length L that is n× the
  attention work of the examples themselves, and the mask costs T² memory. Per example, SDPA
  can use its causal (flash) kernel and the work is Σ Lᵢ² instead of (Σ Lᵢ)². On CUDA with
  ``flash_attn`` installed, flash-attention 2 does the same with its varlen kernel.
* No fp32 copies of frozen embeddings / LM head: peft's k-bit preparation upcasts every
  non-quantized weight to fp32, including the embedding and LM head (2 × vocab × hidden, the
  largest non-quantized tensors). Frozen, they only need the compute dtype (Unsloth's change).

The loss lever lives in engine/loss.py.
"""

from __future__ import annotations

VARLEN = "sdpa_varlen"

_registered = False


def register_attention() -> None:
    """Make ``sdpa_varlen`` known to transformers (idempotent). Its mask function is the
    flash-attention one: no T × T mask, only the 2-D padding mask when a batch has padding."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(VARLEN, sdpa_varlen_attention)
    AttentionMaskInterface.register(VARLEN, flash_attention_mask)
    _registered = True


def segment_bounds(position_ids) -> list[list[tuple[int, int]]]:
    """Per batch row, the (start, end) of each packed example: a new one starts wherever the
    position does not continue the previous one (transformers' packed-sequence rule)."""
    import torch

    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    n = position_ids.shape[1]
    out = []
    for row in starts:
        s = row.nonzero().flatten().tolist()
        out.append(list(zip(s, s[1:] + [n])))
    return out


def sdpa_varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """An AttentionInterface function: query (B, Hq, T, D), key/value (B, Hkv, S, D) →
    (B, T, Hq, D). Packed rows (position_ids restarting at 0) attend within each example only."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    q_len, kv_len = query.shape[2], key.shape[2]
    if kwargs.get("softcap") is not None:
        raise ValueError("sdpa_varlen does not support attention soft-capping; use eager")
    if attention_mask is not None or position_ids is None or q_len != kv_len or q_len == 1:
        # Padding, a KV cache (generation) or no positions: plain SDPA with an explicit mask.
        return sdpa_attention_forward(module, query, key, value, _causal_padding_mask(attention_mask, query, key),
                                      dropout=dropout, scaling=scaling, **_drop(kwargs))
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    bounds = segment_bounds(position_ids.expand(query.shape[0], -1))
    if all(len(b) == 1 for b in bounds) and not (window and q_len > window):
        return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling,
                                      **_drop(kwargs))
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for b, segs in enumerate(bounds):
        parts = []
        for s, e in segs:
            mask = None
            if window and e - s > window:
                i = torch.arange(e - s, device=query.device)
                mask = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < window)
            parts.append(torch.nn.functional.scaled_dot_product_attention(
                query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e], attn_mask=mask,
                dropout_p=dropout if module.training else 0.0, scale=scaling, is_causal=mask is None,
                enable_gqa=gqa))
        rows.append(torch.cat(parts, dim=2))
    out = torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def _drop(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in ("position_ids", "is_causal", "sliding_window")}


def _causal_padding_mask(mask2d, query, key):
    """A (B, 1, T, S) boolean causal mask from a (B, S) padding mask, or None (SDPA's is_causal)."""
    if mask2d is None or mask2d.dim() != 2:
        return mask2d
    import torch

    q_len, kv_len = query.shape[2], key.shape[2]
    i = torch.arange(q_len, device=query.device)[:, None] + (kv_len - q_len)
    j = torch.arange(kv_len, device=query.device)[None, :]
    return ((j <= i)[None, None] & mask2d.bool()[:, None, None, :]).to(query.device)


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
