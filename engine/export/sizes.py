"""How large each export will be, before it is made.

Shapes come from the model built on the ``meta`` device (no weights read), so the numbers are
ready in about a second for any model size:

* adapter: the adapter folder's files (exact);
* merged: parameters × bytes of the dtype (exact for the weights; plus tokenizer files);
* GGUF written by the gguf package: the writer's own tensor plan (exact tensor bytes) plus the
  tokenizer metadata (estimated);
* GGUF K-quants: the main rules of llama.cpp's per-tensor type choice (``gguf_quant.
  llama_cpp_tensor_type``: Q6_K output, a richer half of attn_v/ffn_down, fallbacks for rows
  that are not whole blocks), so "about";
* GGUF LoRA adapter: the adapter's parameter count × 4 or 2 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class SizeEstimate:
    format: str          # registry name
    option: str | None   # the type / dtype, when the format has one
    bytes: int
    exact: bool          # False: an estimate ("about")
    available: bool = True
    reason: str = ""     # why it is not available

    def text(self) -> str:
        return ("" if self.exact else "about ") + human_bytes(self.bytes)


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def meta_shapes(cfg) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor in the model's state dict, from a ``meta``-device build."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def tokenizer_bytes(tokenizer, vocab_size: int) -> int:
    """Bytes of the ``tokenizer.ggml.*`` metadata: token strings (8-byte length + text), a type
    (and a score for SentencePiece) per token, BPE merges, the chat template, ~1 KB of keys."""
    if tokenizer is None:
        return 40 * vocab_size   # measured on SmolLM2's and the tiny test vocabularies
    from engine.data import chat_template_for
    from engine.export.gguf_vocab import tokenizer_json

    vocab = tokenizer.get_vocab()
    n = sum(len(t.encode("utf-8")) + 8 for t in vocab) + 16 * max(0, vocab_size - len(vocab))
    n += 4 * vocab_size
    model = tokenizer_json(tokenizer).get("model") or {}
    if model.get("byte_fallback"):
        n += 4 * vocab_size
    else:
        merges = model.get("merges") or []
        n += sum(len((m if isinstance(m, str) else " ".join(m)).encode("utf-8")) + 8 for m in merges)
    return n + len(chat_template_for(tokenizer).encode("utf-8")) + 1024


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def gguf_size(shapes, cfg, qtype: str, tokenizer=None) -> tuple[int, bool]:
    """(bytes, exact) of a GGUF of type ``qtype`` for a model with these shapes. "Exact" means
    the tensor bytes are; the metadata is within a few hundred bytes."""
    from engine.export.gguf_quant import get_quant_type
    from engine.export.to_gguf import plan_tensors

    q = get_quant_type(qtype)
    if not q.needs_llama_cpp:
        plan = plan_tensors(shapes, cfg, q)
        return sum(p.nbytes for p in plan) + tokenizer_bytes(tokenizer, cfg.vocab_size), True
    from engine.export.gguf_quant import llama_cpp_tensor_type, tensor_nbytes

    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    plan = plan_tensors(shapes, cfg, "f32")
    total = sum(tensor_nbytes(llama_cpp_tensor_type(q, p.gguf_name, p.shape, cfg.num_hidden_layers, tied), p.shape)
                for p in plan)
    return int(total) + tokenizer_bytes(tokenizer, cfg.vocab_size), False


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def adapter_numel(adapter_dir: Path) -> int:
    """Parameters in an adapter's safetensors file, from its header (no tensor read)."""
    from safetensors import safe_open

    st = Path(adapter_dir) / "adapter_model.safetensors"
    if not st.exists():
        return 0
    with safe_open(str(st), "np") as f:
        return sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
