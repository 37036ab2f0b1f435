"""GGUF tensor types: which the ``gguf`` package writes itself, which need llama.cpp's quantizer.

``gguf.quants.quantize`` (gguf 0.19) has Python quantizers for BF16, Q8_0, Q5_1, Q5_0, Q4_1 and
Q4_0 (and the ternary TQ1_0/TQ2_0, which only BitNet-style models survive); the K-quants people
download (Q4_K_M, Q5_K_M, Q6_K …) exist only in llama.cpp's C++ quantizer, which the optional
``llama-cpp-python`` package exposes as ``llama_model_quantize``. Those types are written by
converting to f16 first and letting llama.cpp pick its per-tensor mix (Q4_K_M keeps half of
``attn_v``/``ffn_down`` and the output at Q6_K, for instance) — the mix that the files on the
Hugging Face hub have.

Bits per weight of the K-quants are llama.cpp's own measurements on Llama-3-8B
(tools/quantize/README.md); they are used for size estimates only.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTALL_HINT = ("K-quant types (Q4_K_M, Q5_K_M, Q6_K, …) use llama.cpp's quantizer from the optional "
                "llama-cpp-python package: pip install 'peft-studio[llama]' (it builds llama.cpp from source: "
                "about 20+ minutes on 2 cores; needs cmake and a C++ compiler).")


@dataclass(frozen=True)
class QuantType:
    """One GGUF type a user can choose."""

    name: str                    # lower case, as typed on the command line: "q4_k_m"
    title: str                   # as llama.cpp spells it: "Q4_K_M"
    description: str             # one line for menus
    quantizer: str               # "gguf" (the Python package) or "llama.cpp" (llama-cpp-python)
    bits_per_weight: float       # 2-D weights; for estimates
    ggml_type: str | None = None     # gguf.GGMLQuantizationType member (gguf quantizer)
    file_type: str | None = None     # gguf.LlamaFileType member written as general.file_type
    llama_ftype: str | None = None   # llama_cpp constant (llama.cpp quantizer)

    @property
    def needs_llama_cpp(self) -> bool:
        return self.quantizer == "llama.cpp"


def _q(name, title, description, quantizer, bpw, ggml=None, ftype=None, llama=None) -> QuantType:
    return QuantType(name, title, description, quantizer, bpw, ggml, ftype, llama)


# Ordered from largest to smallest.
QUANT_TYPES: dict[str, QuantType] = {q.name: q for q in (
    _q("f32", "F32", "full precision; for checking, 2x the size of f16", "gguf", 32.0, "F32", "ALL_F32"),
    _q("f16", "F16", "half precision; lossless for models trained in bf16/fp16", "gguf", 16.0, "F16", "MOSTLY_F16"),
    _q("bf16", "BF16", "bfloat16; the range of f32 with half its size", "gguf", 16.0, "BF16", "MOSTLY_BF16"),
    _q("q8_0", "Q8_0", "8-bit; nearly indistinguishable from f16", "gguf", 8.5, "Q8_0", "MOSTLY_Q8_0"),
    _q("q6_k", "Q6_K", "6-bit K-quant; very close to f16", "llama.cpp", 6.5633, llama="LLAMA_FTYPE_MOSTLY_Q6_K"),
    _q("q5_k_m", "Q5_K_M", "5-bit K-quant, medium; a safe small choice", "llama.cpp", 5.7036,
       llama="LLAMA_FTYPE_MOSTLY_Q5_K_M"),
    _q("q5_k_s", "Q5_K_S", "5-bit K-quant, small", "llama.cpp", 5.5704, llama="LLAMA_FTYPE_MOSTLY_Q5_K_S"),
    _q("q5_1", "Q5_1", "5-bit legacy type (scale + minimum)", "gguf", 6.0, "Q5_1", "MOSTLY_Q5_1"),
    _q("q5_0", "Q5_0", "5-bit legacy type", "gguf", 5.5, "Q5_0", "MOSTLY_Q5_0"),
    _q("q4_k_m", "Q4_K_M", "4-bit K-quant, medium; what most people download", "llama.cpp", 4.8944,
       llama="LLAMA_FTYPE_MOSTLY_Q4_K_M"),
    _q("q4_k_s", "Q4_K_S", "4-bit K-quant, small", "llama.cpp", 4.6672, llama="LLAMA_FTYPE_MOSTLY_Q4_K_S"),
    _q("q4_1", "Q4_1", "4-bit legacy type (scale + minimum)", "gguf", 5.0, "Q4_1", "MOSTLY_Q4_1"),
    _q("q4_0", "Q4_0", "4-bit legacy type; the smallest the gguf package writes", "gguf", 4.5, "Q4_0",
       "MOSTLY_Q4_0"),
    _q("q3_k_m", "Q3_K_M", "3-bit K-quant; noticeably worse, for tight memory", "llama.cpp", 3.9960,
       llama="LLAMA_FTYPE_MOSTLY_Q3_K_M"),
    _q("q2_k", "Q2_K", "2-bit K-quant; large quality loss", "llama.cpp", 3.1593, llama="LLAMA_FTYPE_MOSTLY_Q2_K"),
)}

# Types the Python writer produces directly (the intermediate for the llama.cpp ones is f16).
PYTHON_TYPES = tuple(n for n, q in QUANT_TYPES.items() if q.quantizer == "gguf")


def llama_cpp_available() -> bool:
    """Whether ``llama_cpp`` (llama-cpp-python) imports here."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # installed but its shared library does not load
        return False
    return True


def get_quant_type(name: str) -> QuantType:
    """The type named ``name`` (case-insensitive); ExportError listing the choices otherwise."""
    from engine.export.atomic import ExportError

    key = (name or "").strip().lower()
    if key not in QUANT_TYPES:
        raise ExportError(f"GGUF type {name!r} is not known; choose one of {', '.join(QUANT_TYPES)}.")
    return QUANT_TYPES[key]


def require_quantizer(q: QuantType) -> None:
    """ExportError with the install command when ``q`` needs llama-cpp-python and it is absent."""
    from engine.export.atomic import ExportError

    if q.needs_llama_cpp and not llama_cpp_available():
        raise ExportError(f"{q.title} needs llama.cpp's quantizer, which is not installed. {INSTALL_HINT}")


def python_tensor_type(q: QuantType, hf_name_or_gguf: str, shape: tuple[int, ...], is_embedding_or_output: bool):
    """The gguf.GGMLQuantizationType name a tensor is written as, for a gguf-package type ``q``.

    * 1-D tensors (norms, biases, rope factors) stay F32, as llama.cpp requires;
    * a row length that is not a whole number of quantization blocks falls back to F16
      (llama.cpp's converter does the same);
    * for the 4/5-bit types the token embedding and output matrix are kept at Q8_0: their errors
      reach every logit, which is why llama.cpp's own quantizer keeps them at Q6_K (a type the
      gguf package cannot write).
    """
    import gguf

    if len(shape) < 2 or q.ggml_type == "F32":
        return "F32"
    t = q.ggml_type
    if t not in ("F16", "BF16", "F32") and is_embedding_or_output and q.bits_per_weight < 8:
        t = "Q8_0"
    block, _ = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, t)]
    if shape[-1] % block != 0:
        return "F16"
    return t


def tensor_nbytes(ggml_type: str, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``shape`` takes as ``ggml_type`` (from gguf.GGML_QUANT_SIZES)."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, ggml_type)]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


# ---- llama.cpp's per-tensor choice, for size estimates ------------------------------------------
# The main rules of llama.cpp's ``llama_tensor_get_type`` (src/llama-quant.cpp) for the K-quant
# file types offered here: the base type, the output (and tied embedding) at Q6_K, half of the
# attn_v / ffn_down layers one step up for the _M types, and the fallback for rows that are not
# whole 256-value blocks (Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, Q3_K/Q2_K→Q4_0, then F16).
_K_BASE = {"q6_k": "Q6_K", "q5_k_m": "Q5_K", "q5_k_s": "Q5_K", "q4_k_m": "Q4_K", "q4_k_s": "Q4_K",
           "q3_k_m": "Q3_K", "q2_k": "Q2_K"}
_K_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def llama_cpp_tensor_type(q: QuantType, gguf_name: str, shape: tuple[int, ...], n_layers: int,
                          tied: bool) -> str:
    """The type llama.cpp's quantizer gives a tensor for file type ``q`` (main rules only)."""
    import gguf

    if len(shape) < 2:
        return "F32"
    base = _K_BASE[q.name]
    t = base
    layer = int(gguf_name.split(".")[1]) if gguf_name.startswith("blk.") else -1
    if gguf_name.startswith("output.") or (tied and gguf_name.startswith("token_embd.")):
        t = "Q6_K"
    elif (".attn_v." in gguf_name or ".ffn_down." in gguf_name) and q.name in ("q4_k_m", "q5_k_m") \
            and _use_more_bits(layer, n_layers):
        t = "Q6_K"
    elif ".attn_v." in gguf_name and q.name == "q3_k_m":
        t = "Q5_K" if layer < 2 else "Q4_K"
    elif ".ffn_down." in gguf_name and q.name == "q3_k_m":
        t = "Q5_K" if layer < n_layers // 16 else "Q4_K"
    for _ in range(2):
        block, _size = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, t)]
        if shape[-1] % block == 0:
            return t
        t = _K_FALLBACK.get(t, "F16")
    return "F16"
