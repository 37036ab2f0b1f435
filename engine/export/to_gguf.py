"""Write a (merged) Llama-family model to a GGUF file: f32, f16 or q8_0.

Written with the ``gguf`` package (llama.cpp's own Python library): its GGUFWriter, its
tensor-name map (``get_tensor_name_map``), its quantizer and its SpecialVocab for merges,
special token ids and the chat template. What is ours is only the glue that llama.cpp's
``convert_hf_to_gguf.py`` does for Llama (that script is not an installable library):

* the q/k projection rows are permuted from Hugging Face's rotary layout (rotate-half) to
  llama.cpp's interleaved one — transformers' GGUF loader applies the exact inverse
  (``LlamaTensorProcessor._reverse_permute_weights``), which our round-trip test relies on;
* the token list with llama.cpp token types (normal / control / user-defined / unused);
* 1-D tensors (norms) stay f32 in f16 and q8_0 files, as llama.cpp does.

Tensors are converted and written one at a time, so the file never holds a second copy of
the model in memory.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.export.atomic import ExportError

GGUF_TYPES = ("f32", "f16", "q8_0")

# model_type → (gguf MODEL_ARCH member name, q/k permute needed)
_ARCHS = {"llama": ("LLAMA", True)}


@dataclass
class _Planned:
    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]
    qtype: str         # f32 | f16 | q8_0
    permute_heads: int = 0   # >0: permute rows for this many heads


def supported_architectures() -> list[str]:
    return sorted(_ARCHS)


def check_gguf_support(model_config) -> None:
    """Raise ExportError when this model cannot be written (checked before any heavy work)."""
    mt = getattr(model_config, "model_type", "?")
    if mt not in _ARCHS:
        raise ExportError(f"GGUF export supports Llama-family models ({', '.join(supported_architectures())}); "
                          f"this model is {mt}. Export the merged model instead and convert it with "
                          "llama.cpp's convert_hf_to_gguf.py.")
    rope = _rope_parameters(model_config)
    rope_type = (rope or {}).get("rope_type") or (rope or {}).get("type") or "default"
    if rope_type != "default":
        raise ExportError(f"GGUF export does not handle rope scaling of type {rope_type!r} yet; export the merged "
                          "model and convert it with llama.cpp's convert_hf_to_gguf.py.")


def _rope_parameters(cfg) -> dict:
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        return rp
    rs = getattr(cfg, "rope_scaling", None)
    return dict(rs) if isinstance(rs, dict) else {}


def _rope_theta(cfg) -> float:
    rp = _rope_parameters(cfg)
    if "rope_theta" in rp:
        return float(rp["rope_theta"])
    return float(getattr(cfg, "rope_theta", 10000.0))


def _permute(w, n_head: int):
    """HF's rotate-half q/k layout → llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _out_type(qtype: str, shape: tuple[int, ...]) -> str:
    if len(shape) < 2 or qtype == "f32":
        return "f32"
    if qtype == "q8_0" and shape[-1] % 32 != 0:
        return "f16"  # llama.cpp's fallback for rows that are not whole Q8_0 blocks
    return qtype


def _plan(model, qtype: str) -> list[_Planned]:
    import gguf

    cfg = model.config
    arch_name, permute = _ARCHS[cfg.model_type]
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch_name), cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    n_head = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_head
    plan: list[_Planned] = []
    for hf_name, t in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # absent output.weight tells llama.cpp (and transformers) the embeddings are tied
        gname = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise ExportError(f"No GGUF name for tensor {hf_name}; this {cfg.model_type} variant is not supported.")
        heads = 0
        if permute and hf_name.endswith("self_attn.q_proj.weight"):
            heads = n_head
        elif permute and hf_name.endswith("self_attn.k_proj.weight"):
            heads = n_kv
        shape = tuple(t.shape)
        plan.append(_Planned(gname, hf_name, shape, _out_type(qtype, shape), heads))
    return plan


def _convert(t, p: _Planned):
    """A tensor as the numpy array GGUF stores (f32 / f16 / Q8_0 bytes)."""
    import gguf
    import numpy as np

    a = t.detach().to("cpu").float().numpy()
    if p.permute_heads:
        a = _permute(a, p.permute_heads)
    if p.qtype == "f32":
        return np.ascontiguousarray(a, dtype=np.float32)
    if p.qtype == "f16":
        return np.ascontiguousarray(a.astype(np.float16))
    return gguf.quants.quantize(np.ascontiguousarray(a, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)


def _info(p: _Planned):
    """(byte shape, numpy dtype, nbytes, raw ggml type) for GGUFWriter.add_tensor_info."""
    import gguf
    import numpy as np

    n = 1
    for d in p.shape:
        n *= d
    if p.qtype == "f32":
        return p.shape, np.dtype(np.float32), 4 * n, None
    if p.qtype == "f16":
        return p.shape, np.dtype(np.float16), 2 * n, None
    q = gguf.GGMLQuantizationType.Q8_0
    bshape = gguf.quant_shape_to_byte_shape(p.shape, q)
    nb = 1
    for d in bshape:
        nb *= d
    return bshape, np.dtype(np.uint8), nb, q


# ---- tokenizer ------------------------------------------------------------------------------

def _pre_tokenizer_name(tokenizer) -> str:
    """llama.cpp's name for how text is split before BPE (tokenizer.ggml.pre).

    llama.cpp identifies pre-tokenizers by a hash of sample tokenizations; we read the
    tokenizer.json structure instead, which covers the families we export.
    """
    try:
        pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    except Exception:
        return "default"
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if "Digits" in kinds and any(p.get("individual_digits") for p in parts if p.get("type") == "Digits"):
        return "smollm"   # SmolLM/StarCoder style: digits split one by one, then GPT-2 byte level
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    for p in parts:
        rx = (p.get("pattern") or {}).get("Regex", "") if p.get("type") == "Split" else ""
        if "\\p{N}{1,3}" in rx and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in rx:
            return "llama-bpe"  # Llama 3's split
    return "default"


def _check_tokenizer(tokenizer) -> None:
    try:
        data = json.loads(tokenizer.backend_tokenizer.to_str())
    except Exception:
        raise ExportError("GGUF export needs a fast (tokenizer.json) tokenizer.") from None
    model_type = (data.get("model") or {}).get("type")
    decoder = (data.get("decoder") or {}).get("type")
    if model_type != "BPE" or (data.get("model") or {}).get("byte_fallback") or decoder != "ByteLevel":
        raise ExportError("GGUF export supports byte-level BPE tokenizers (GPT-2 style: SmolLM, Llama 3, "
                          f"Qwen); this tokenizer is {model_type}/{decoder}. Export the merged model and "
                          "convert it with llama.cpp's convert_hf_to_gguf.py.")


def _token_list(tokenizer, vocab_size: int):
    """Tokens in id order with llama.cpp token types, padded to the model's vocabulary size
    (embedding rows beyond the tokenizer become unused [PADn] tokens, as in llama.cpp)."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _add_tokenizer(writer, tokenizer, vocab_size: int, pre: str | None) -> None:
    import gguf

    _check_tokenizer(tokenizer)
    tokens, types = _token_list(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or _pre_tokenizer_name(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # SpecialVocab reads merges, special ids, add_bos/add_eos and the chat template from the
    # saved tokenizer files, exactly as llama.cpp's converter does.
    with tempfile.TemporaryDirectory(prefix="peft-studio-tok-") as d:
        tokenizer.save_pretrained(d)
        sv = gguf.SpecialVocab(d, load_merges=True, n_vocab=len(tokens))
        if not getattr(tokenizer, "chat_template", None):
            sv.chat_template = None
        elif sv.chat_template is None:
            sv.chat_template = tokenizer.chat_template
        for typ, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unk_token_id"),
                          ("pad", "pad_token_id")):
            tid = getattr(tokenizer, attr, None)
            if tid is not None and typ not in sv.special_token_ids and tid < len(tokens):
                sv.special_token_ids[typ] = tid
        # State add_bos/add_eos explicitly (from what the tokenizer really does) rather than
        # leave llama.cpp to guess: it would prepend BOS for some architectures.
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        extra = len(with_special) > len(plain)
        sv.add_special_token.setdefault(
            "bos", extra and tokenizer.bos_token_id is not None and with_special[0] == tokenizer.bos_token_id)
        sv.add_special_token.setdefault(
            "eos", extra and tokenizer.eos_token_id is not None and with_special[-1] == tokenizer.eos_token_id)
        sv.add_to_gguf(writer, quiet=True)


# ---- the writer -----------------------------------------------------------------------------

def write_gguf(model, tokenizer, path: str | Path, qtype: str = "f16", name: str | None = None,
               tokenizer_pre: str | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Write ``model`` (a plain transformers causal LM, adapters already merged) to ``path``."""
    import gguf

    if qtype not in GGUF_TYPES:
        raise ExportError(f"GGUF type {qtype!r} is not supported; choose one of {', '.join(GGUF_TYPES)}.")
    cfg = model.config
    check_gguf_support(cfg)
    arch_name, _ = _ARCHS[cfg.model_type]
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    path = Path(path)
    plan = _plan(model, qtype)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or getattr(cfg, "_name_or_path", "") or cfg.model_type)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
        writer.add_rope_dimension_count(head_dim)
        if head_dim != cfg.hidden_size // cfg.num_attention_heads:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_rope_freq_base(_rope_theta(cfg))
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_file_type(file_type)
        if qtype == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, tokenizer, cfg.vocab_size, tokenizer_pre)

        for p in plan:
            bshape, dtype, nbytes, raw = _info(p)
            writer.add_tensor_info(p.gguf_name, bshape, dtype, nbytes, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        state = model.state_dict()
        for i, p in enumerate(plan):
            if progress:
                progress(f"Writing {qtype} tensors", i, len(plan))
            writer.write_tensor_data(_convert(state[p.hf_name], p))
        if progress:
            progress(f"Writing {qtype} tensors", len(plan), len(plan))
        writer.flush()
    finally:
        writer.close()
    return path


def gguf_logits_check(model, gguf_path: str | Path, input_ids) -> float:
    """Load ``gguf_path`` back with transformers' GGUF loader; max |Δlogit| against ``model``."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf_path = Path(gguf_path)
    back = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    back.eval()
    model.eval()
    with torch.no_grad():
        a = model(input_ids=input_ids).logits.float()
        b = back(input_ids=input_ids).logits.float()
    return float((a - b).abs().max())
