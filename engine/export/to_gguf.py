"""Write a (merged) transformers causal LM to a GGUF file that llama.cpp runs.

Written with the ``gguf`` package (llama.cpp's own Python library): its ``GGUFWriter``, its
architecture constants and tensor-name map (``gguf.MODEL_ARCH``, ``get_tensor_name_map``), its
quantizer (``gguf.quants``) and ``SpecialVocab``. What differs per architecture is in
``engine.export.gguf_arch``; the tokenizer in ``engine.export.gguf_vocab``; the types in
``engine.export.gguf_quant``. K-quants are made from this module's f16 output by llama.cpp's
quantizer (``engine.export.llamacpp``).

Tensors are converted and written one at a time, so the file never holds a second copy of the
model in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.export.atomic import ExportError
from engine.export.gguf_arch import (
    GGUFArch,
    arch_for,
    check_architecture,
    head_dim,
    llama3_rope_factors,
    rope_parameters,
    supported_architectures,
)
from engine.export.gguf_quant import (
    PYTHON_TYPES,
    QuantType,
    get_quant_type,
    python_tensor_type,
    tensor_nbytes,
)

GGUF_TYPES = PYTHON_TYPES  # what write_gguf writes itself; see gguf_quant.QUANT_TYPES for all

__all__ = ["GGUF_TYPES", "Planned", "check_gguf_support", "gguf_logits_check", "plan_tensors",
           "supported_architectures", "write_gguf"]


@dataclass
class Planned:
    """One tensor of the file: where it comes from and how it is stored."""

    gguf_name: str
    hf_name: str | None            # None: made by the writer (rope factors)
    shape: tuple[int, ...]
    ggml_type: str                 # gguf.GGMLQuantizationType member name
    permute_heads: int = 0         # >0: permute rows for this many heads (Llama q/k)
    add: float = 0.0               # added to every value (Gemma norms)
    values: list[float] | None = None   # the data of a made tensor

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.shape)


def check_gguf_support(model_config, tokenizer=None, tokenizer_pre: str | None = None) -> None:
    """Raise ExportError when this model (or its tokenizer) cannot be written; cheap, run first."""
    check_architecture(model_config)
    if tokenizer is not None:
        from engine.export.gguf_vocab import check_tokenizer

        check_tokenizer(tokenizer, tokenizer_pre)


def _permute(w, n_head: int):
    """HF's rotate-half q/k layout → llama.cpp's interleaved pairs (for weights and biases)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _is_embedding_or_output(gguf_name: str) -> bool:
    return gguf_name.startswith(("token_embd.", "output."))


def _extra_tensors(cfg, arch: GGUFArch) -> list[tuple[str, list[float]]]:
    """Tensors llama.cpp needs that are not weights: rope frequency factors."""
    import gguf

    rp = rope_parameters(cfg)
    out = []
    if rp["rope_type"] == "llama3":
        out.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", llama3_rope_factors(cfg)))
    if rp["rope_type"] in ("longrope", "su") and rp.get("long_factor"):
        out.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight", list(rp["long_factor"])))
        out.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight", list(rp["short_factor"])))
    return out


def plan_tensors(named_shapes: Iterable[tuple[str, tuple[int, ...]]], cfg, qtype: str | QuantType = "f16") -> list[Planned]:
    """Every tensor of the GGUF file for a model with these (HF name, shape) pairs.

    Needs shapes only, so a model on the meta device gives the exact file size before any
    weight is loaded. ``qtype`` must be a type the gguf package writes (see ``GGUF_TYPES``).
    """
    import gguf

    q = qtype if isinstance(qtype, QuantType) else get_quant_type(qtype)
    if q.needs_llama_cpp:
        raise ExportError(f"{q.title} is made by llama.cpp's quantizer from an f16 file, not written directly.")
    arch = arch_for(cfg)
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.arch), cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    if arch.always_tied and not tied:
        raise ExportError(f"llama.cpp's {arch.title} uses the token embeddings as the output layer; this model has "
                          "a separate lm_head, which a GGUF file of this architecture cannot hold.")
    n_head = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_head
    plan: list[Planned] = []
    for hf_name, shape in named_shapes:
        shape = tuple(int(d) for d in shape)
        if (tied or arch.always_tied) and hf_name == "lm_head.weight":
            continue  # no output.weight: llama.cpp (and transformers) use the embeddings, as trained
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gname = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise ExportError(f"No GGUF name for tensor {hf_name}; this {cfg.model_type} variant is not supported.")
        heads = 0
        if arch.permute_qk and ".self_attn.q_proj." in hf_name:
            heads = n_head
        elif arch.permute_qk and ".self_attn.k_proj." in hf_name:
            heads = n_kv
        add = arch.norm_shift if hf_name.endswith("norm.weight") else 0.0
        ttype = python_tensor_type(q, gname, shape, _is_embedding_or_output(gname))
        plan.append(Planned(gname, hf_name, shape, ttype, heads, add))
    for gname, values in _extra_tensors(cfg, arch):
        plan.append(Planned(gname, None, (len(values),), "F32", values=values))
    return plan


def _convert(t, p: Planned):
    """A tensor as the numpy array GGUF stores (F32 / F16 / BF16 / quantized bytes)."""
    import gguf
    import numpy as np

    if p.values is not None:
        return np.asarray(p.values, dtype=np.float32)
    a = t.detach().to("cpu").float().numpy()
    if p.permute_heads:
        a = _permute(a, p.permute_heads)
    if p.add:
        a = a + np.float32(p.add)
    if p.ggml_type == "F32":
        return np.ascontiguousarray(a, dtype=np.float32)
    if p.ggml_type == "F16":
        return np.ascontiguousarray(a.astype(np.float16))
    return gguf.quants.quantize(np.ascontiguousarray(a, dtype=np.float32),
                                getattr(gguf.GGMLQuantizationType, p.ggml_type))


def _info(p: Planned):
    """(byte shape, numpy dtype, nbytes, raw ggml type) for GGUFWriter.add_tensor_info."""
    import gguf
    import numpy as np

    if p.ggml_type == "F32":
        return p.shape, np.dtype(np.float32), p.nbytes, None
    if p.ggml_type == "F16":
        return p.shape, np.dtype(np.float16), p.nbytes, None
    q = getattr(gguf.GGMLQuantizationType, p.ggml_type)
    return gguf.quant_shape_to_byte_shape(p.shape, q), np.dtype(np.uint8), p.nbytes, q


def _add_model_metadata(writer, cfg, arch: GGUFArch, q: QuantType) -> None:
    import gguf

    hd = head_dim(cfg)
    rp = rope_parameters(cfg)
    writer.add_context_length(int(cfg.max_position_embeddings))
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    writer.add_key_length(hd)
    writer.add_value_length(hd)
    partial = float(rp.get("partial_rotary_factor", getattr(cfg, "partial_rotary_factor", None) or 1.0))
    writer.add_rope_dimension_count(int(hd * partial))
    writer.add_rope_freq_base(float(rp["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, q.file_type))
    if q.ggml_type not in ("F32", "F16", "BF16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    rope_type = rp["rope_type"]
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rp["factor"]))
    elif rope_type == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rp["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rp["original_max_position_embeddings"]))
        for key, add in (("extrapolation_factor", writer.add_rope_scaling_yarn_ext_factor),
                         ("attention_factor", writer.add_rope_scaling_yarn_attn_factor),
                         ("beta_fast", writer.add_rope_scaling_yarn_beta_fast),
                         ("beta_slow", writer.add_rope_scaling_yarn_beta_slow)):
            if rp.get(key) is not None:
                add(float(rp[key]))
    elif rope_type in ("longrope", "su") and rp.get("long_factor"):
        import math

        writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        orig = int(rp.get("original_max_position_embeddings") or cfg.original_max_position_embeddings)
        scale = cfg.max_position_embeddings / orig
        # Phi-3's long-context attention factor (transformers' _compute_longrope_parameters).
        writer.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
    if arch.metadata is not None:
        arch.metadata(writer, cfg)


def write_gguf(model, tokenizer, path: str | Path, qtype: str = "f16", name: str | None = None,
               tokenizer_pre: str | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Write ``model`` (a plain transformers causal LM, adapters already merged) to ``path``.

    ``qtype`` is one of ``GGUF_TYPES`` (the gguf package's own quantizers). Raises ExportError for
    an architecture, rope scaling or tokenizer that llama.cpp would run differently.
    """
    import gguf

    q = get_quant_type(qtype)
    cfg = model.config
    check_gguf_support(cfg, tokenizer, tokenizer_pre)
    arch = arch_for(cfg)
    state = model.state_dict()
    plan = plan_tensors(((k, tuple(v.shape)) for k, v in state.items()), cfg, q)
    path = Path(path)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch.arch)])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or getattr(cfg, "_name_or_path", "") or cfg.model_type)
        _add_model_metadata(writer, cfg, arch, q)
        from engine.export.gguf_vocab import add_tokenizer

        add_tokenizer(writer, tokenizer, cfg.vocab_size, tokenizer_pre)
        for p in plan:
            bshape, dtype, nbytes, raw = _info(p)
            writer.add_tensor_info(p.gguf_name, bshape, dtype, nbytes, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        stage = f"Writing {q.title} tensors"
        for i, p in enumerate(plan):
            if progress:
                progress(stage, i, len(plan))
            writer.write_tensor_data(_convert(state[p.hf_name] if p.hf_name else None, p))
        if progress:
            progress(stage, len(plan), len(plan))
        writer.flush()
    finally:
        writer.close()
    return path


def load_with_transformers(gguf_path: str | Path):
    """The GGUF file loaded back by transformers' GGUF reader (dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf_path = Path(gguf_path)
    back = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    back.eval()
    return back


def gguf_logits_check(model, gguf_path: str | Path, input_ids) -> float:
    """Load ``gguf_path`` back with transformers' GGUF loader; max |Δlogit| against ``model``."""
    import torch

    back = load_with_transformers(gguf_path)
    model.eval()
    with torch.no_grad():
        a = model(input_ids=input_ids).logits.float()
        b = back(input_ids=input_ids).logits.float()
    return float((a - b).abs().max())
