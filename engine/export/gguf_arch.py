"""Which transformers architectures the GGUF writer handles, and what each needs.

Tensor names come from the ``gguf`` package's own map (``gguf.get_tensor_name_map`` for the
architecture's ``gguf.MODEL_ARCH``), the metadata keys from ``GGUFWriter``'s ``add_*`` methods.
What is ours is the small per-architecture difference that llama.cpp's ``convert_hf_to_gguf.py``
encodes in its model classes (that script is not an installable library):

* Llama / Mistral (``MODEL_ARCH.LLAMA``): llama.cpp applies rotary embeddings to interleaved
  pairs, Hugging Face to two halves, so q/k rows (and biases) are permuted per head;
  a ``rope_type: llama3`` scaling becomes a ``rope_freqs`` tensor (Meta's formula).
* Qwen2 / Qwen3 / Phi-3 / Gemma: llama.cpp uses the "NEOX" (halves) layout, so no permute.
* Gemma 1/2/3 store RMSNorm weights as ``w - 1`` (``x * (1 + w)``); llama.cpp wants ``w``:
  every ``*norm.weight`` gets ``+ 1``. Gemma 2 has no output tensor in llama.cpp (always tied),
  and soft-capping, sliding window and its layer pattern go into the metadata.
* Phi-3: the fused ``qkv_proj`` and ``gate_up_proj`` map straight to ``attn_qkv``/``ffn_up``
  (llama.cpp splits them at run time); partial rotary factor → rope dimension count.

``check_architecture(config)`` names what cannot be written before any weight is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from engine.export.atomic import ExportError


@dataclass(frozen=True)
class GGUFArch:
    """How one transformers ``model_type`` becomes a GGUF file."""

    model_type: str              # transformers' config.model_type
    arch: str                    # gguf.MODEL_ARCH member name
    title: str                   # shown to the user
    permute_qk: bool = False     # llama.cpp's interleaved rotary layout (LLAMA arch)
    norm_shift: float = 0.0      # added to every *norm.weight (Gemma's 1 + w)
    always_tied: bool = False    # llama.cpp has no separate output tensor for this arch
    metadata: Callable | None = None   # (writer, config) → None: the architecture's own keys


def rope_parameters(cfg, layer_type: str = "full_attention") -> dict:
    """The rope dict of ``cfg`` in transformers 5's shape ({rope_type, rope_theta, factor, …}).

    Gemma 3 keeps one dict per attention kind ({"full_attention": {...}, "sliding_attention":
    {...}}); older configs keep ``rope_scaling`` and ``rope_theta`` apart.
    """
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict) and layer_type in rp and isinstance(rp[layer_type], dict):
        rp = rp[layer_type]
    out = dict(rp) if isinstance(rp, dict) else {}
    rs = getattr(cfg, "rope_scaling", None)
    if isinstance(rs, dict):
        for k, v in rs.items():
            out.setdefault(k, v)
    if "rope_type" not in out and "type" in out:
        out["rope_type"] = out["type"]
    if "rope_theta" not in out and getattr(cfg, "rope_theta", None) is not None:
        out["rope_theta"] = cfg.rope_theta
    out.setdefault("rope_theta", 10000.0)
    out.setdefault("rope_type", "default")
    return out


def head_dim(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def swa_layers(cfg) -> list[bool] | None:
    """Per layer: True where attention is sliding-window (from ``layer_types``)."""
    types = getattr(cfg, "layer_types", None)
    if not types:
        return None
    return [t == "sliding_attention" for t in types]


def llama3_rope_factors(cfg) -> list[float]:
    """The per-frequency divisors of Llama 3.1's rope scaling (``rope_type: llama3``).

    Source: Meta's reference ``apply_scaling`` (llama-models ``reference_impl/model.py``), which
    transformers' ``_compute_llama3_parameters`` and llama.cpp's converter follow: wavelengths
    shorter than ``original_max_position_embeddings / high_freq_factor`` keep their frequency,
    longer than ``… / low_freq_factor`` are divided by ``factor``, and the band between is
    interpolated. llama.cpp divides each frequency by the value stored here.
    """
    rp = rope_parameters(cfg)
    dim = head_dim(cfg)
    base = float(rp["rope_theta"])
    factor = float(rp.get("factor", 8.0))
    low = float(rp.get("low_freq_factor", 1.0))
    high = float(rp.get("high_freq_factor", 4.0))
    old_ctx = float(rp.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out


# ---- per-architecture metadata ---------------------------------------------------------------

def _gemma2(w, cfg) -> None:
    w.add_attn_logit_softcapping(float(cfg.attn_logit_softcapping or 0.0))
    w.add_final_logit_softcapping(float(cfg.final_logit_softcapping or 0.0))
    if cfg.sliding_window:
        w.add_sliding_window(int(cfg.sliding_window))
        if (pattern := swa_layers(cfg)) is not None:
            w.add_sliding_window_pattern(pattern)


def _gemma3(w, cfg) -> None:
    if getattr(cfg, "final_logit_softcapping", None):
        w.add_final_logit_softcapping(float(cfg.final_logit_softcapping))
    pattern = swa_layers(cfg)
    if cfg.sliding_window and (pattern is None or any(pattern)):
        w.add_sliding_window(int(cfg.sliding_window))
        if pattern is not None:
            w.add_sliding_window_pattern(pattern)
        local = rope_parameters(cfg, "sliding_attention")
        w.add_rope_freq_base_swa(float(getattr(cfg, "rope_local_base_freq", None) or local["rope_theta"]))


def _phi3(w, cfg) -> None:
    rp = rope_parameters(cfg)
    if rp.get("original_max_position_embeddings") or getattr(cfg, "original_max_position_embeddings", None):
        w.add_rope_scaling_orig_ctx_len(int(rp.get("original_max_position_embeddings")
                                            or cfg.original_max_position_embeddings))
    # llama.cpp tells Phi-4 (0) from Phi-3 by this key; it disables Phi-3's sliding window itself.
    w.add_sliding_window(int(getattr(cfg, "sliding_window", None) or 0))


ARCHS: dict[str, GGUFArch] = {}


def _register(a: GGUFArch) -> None:
    if a.model_type in ARCHS:
        raise ValueError(f"GGUF architecture {a.model_type!r} registered twice")
    ARCHS[a.model_type] = a


_register(GGUFArch("llama", "LLAMA", "Llama-family (Llama 2/3, SmolLM, TinyLlama)", permute_qk=True))
_register(GGUFArch("mistral", "LLAMA", "Mistral", permute_qk=True))
_register(GGUFArch("qwen2", "QWEN2", "Qwen2 / Qwen2.5"))
_register(GGUFArch("qwen3", "QWEN3", "Qwen3"))
_register(GGUFArch("gemma", "GEMMA", "Gemma", norm_shift=1.0, always_tied=True))
_register(GGUFArch("gemma2", "GEMMA2", "Gemma 2", norm_shift=1.0, always_tied=True, metadata=_gemma2))
_register(GGUFArch("gemma3_text", "GEMMA3", "Gemma 3 (text)", norm_shift=1.0, metadata=_gemma3))
_register(GGUFArch("phi3", "PHI3", "Phi-3 / Phi-3.5 / Phi-4-mini", metadata=_phi3))

_ROPE_TYPES = {"default", "linear", "yarn", "llama3", "longrope", "su"}
_ROPE_TYPES_BY_ARCH = {"phi3": {"default", "longrope", "su"}}


def supported_architectures() -> list[str]:
    return sorted(ARCHS)


def supported_text() -> str:
    return ", ".join(a.title for a in ARCHS.values())


def arch_for(cfg) -> GGUFArch:
    check_architecture(cfg)
    return ARCHS[cfg.model_type]


def _gemma_attention_scale_ok(cfg) -> bool:
    """llama.cpp scales Gemma 2/3 queries by 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the
    27B layer counts (46 for Gemma 2, 62 for Gemma 3): it reads no key for it."""
    q = getattr(cfg, "query_pre_attn_scalar", None)
    if q is None:
        return True
    big = cfg.num_hidden_layers == (46 if cfg.model_type == "gemma2" else 62)
    expected = cfg.hidden_size / cfg.num_attention_heads if big else head_dim(cfg)
    return abs(float(q) - float(expected)) < 1e-6


def check_architecture(cfg) -> None:
    """Raise ExportError, naming the reason, when ``cfg`` cannot be written as GGUF."""
    mt = getattr(cfg, "model_type", "?")
    if mt == "gemma3":
        raise ExportError("This is a multimodal Gemma 3 (text and vision); GGUF export writes text models only. "
                          "Fine-tune a text-only Gemma 3 (gemma-3-1b / gemma3_text), or export the merged model and "
                          "convert it with llama.cpp's convert_hf_to_gguf.py, which writes the vision part apart.")
    if mt not in ARCHS:
        raise ExportError(f"GGUF export cannot write {mt} models; it writes {supported_text()}. Export the merged "
                          "model instead and convert it with llama.cpp's convert_hf_to_gguf.py.")
    rope_type = rope_parameters(cfg)["rope_type"]
    allowed = _ROPE_TYPES_BY_ARCH.get(mt, _ROPE_TYPES - {"longrope", "su"})
    if rope_type not in allowed:
        raise ExportError(f"GGUF export does not handle rope scaling of type {rope_type!r} for {mt}; export the "
                          "merged model and convert it with llama.cpp's convert_hf_to_gguf.py.")
    if mt in ("gemma2", "gemma3_text") and not _gemma_attention_scale_ok(cfg):
        raise ExportError(f"This {mt} model scales attention by query_pre_attn_scalar={cfg.query_pre_attn_scalar}, "
                          "which llama.cpp cannot be told (it derives the scale from the head size); the GGUF "
                          "would compute different answers.")
    if getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None):
        raise ExportError(f"GGUF export does not write mixture-of-experts models ({mt}).")
