"""``sdpa_varlen``: PyTorch SDPA once per packed example, registered with transformers.

A packed row of several examples otherwise goes through SDPA with a block-diagonal (T × T) mask,
which computes every cross-example block only to mask it away: for a row of n examples of
length L that is n× the attention work of the examples themselves, and the mask costs T²
memory. Per example, SDPA can use its causal (flash) kernel and the work is Σ Lᵢ² instead of
(Σ Lᵢ)². It lives with the models because loading a model with
``attn_implementation: sdpa_varlen`` needs it registered first; engine.training.speed chooses it.
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
