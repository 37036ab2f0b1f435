"""Loading a base model and its tokenizer for training or inference."""

from __future__ import annotations

from pathlib import Path

from engine.errors import ModelError
from engine.models.attention import register_attention
from engine.models.source import WEIGHT_FILES, has_weights, resolve_source

# Files a tokenizer may consist of; copied unchanged beside adapters and merged models.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


def load_base_tokenizer(name_or_path: str, trust_remote_code: bool = False, offline: bool = True):
    """The base model's tokenizer exactly as it ships (no pad token added, its own padding side)."""
    from transformers import AutoTokenizer

    src = resolve_source(name_or_path, offline)
    try:
        if src.kind == "gguf":
            return AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        return AutoTokenizer.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelError(f"Could not load the tokenizer of {src.display}: {e}") from None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, offline: bool = True, log=None):
    """The base's tokenizer ready for batching: a pad token when it has none and right padding
    (:func:`ensure_pad_token`; ``log(message)`` is told what was chosen). Save
    :class:`BaseTokenizer` beside an adapter, not this one."""
    return ensure_pad_token(load_base_tokenizer(name_or_path, trust_remote_code, offline), log)


def pad_choice(tok) -> str | None:
    """The token :func:`ensure_pad_token` pads with when ``tok`` has no pad token (None: it has one)."""
    if tok.pad_token is not None:
        return None
    for cand in (tok.eos_token, tok.unk_token, tok.bos_token):
        if cand is not None:
            return cand
    return "<|pad|>"


def ensure_pad_token(tok, log=None):
    """Give ``tok`` a pad token when it has none, and pad on the right (training's collator).

    Many causal-LM tokenizers have no pad token. Padding positions are masked out of the loss
    and attention, so reusing EOS (or UNK, BOS) is safe and avoids resizing the embeddings; only a
    tokenizer with none of them gets a new ``<|pad|>`` token. The choice is told to ``log`` (a
    user's model must not change without a word); the tokenizer saved with an adapter is the
    base's own (:class:`BaseTokenizer`), without this pad token."""
    chosen = pad_choice(tok)
    if chosen is not None:
        if chosen == "<|pad|>":
            tok.add_special_tokens({"pad_token": chosen})
        else:
            tok.pad_token = chosen
        if log is not None:
            log(f"The tokenizer has no pad token, so batches are padded with {chosen!r} (id {tok.pad_token_id}); "
                "padding is masked out of attention and the loss. The tokenizer saved with the adapter is the "
                "base's, unchanged (no pad token).")
    tok.padding_side = "right"
    return tok


class BaseTokenizer:
    """The base model's tokenizer files, to be saved beside an adapter unchanged.

    ``save_pretrained(dir)`` copies the base folder's tokenizer files byte for byte (so the
    adapter's tokenizer is the base's, whatever the training run set for padding); a base without
    such files (a .gguf file) gets its tokenizer saved as loaded, without a pad token added."""

    def __init__(self, name_or_path: str, trust_remote_code: bool = False, offline: bool = True):
        self.name_or_path, self.trust_remote_code, self.offline = name_or_path, trust_remote_code, offline

    def save_pretrained(self, directory, **kwargs) -> None:
        import shutil

        src = resolve_source(self.name_or_path, self.offline)
        folder = Path(src.path)
        files = [folder / n for n in TOKENIZER_FILES if src.kind != "gguf" and (folder / n).is_file()]
        if files:
            for f in files:
                shutil.copy2(f, Path(directory) / f.name)
            return
        load_base_tokenizer(self.name_or_path, self.trust_remote_code, self.offline).save_pretrained(directory)


def resolve_dtype(dtype: str, device: str | None = None):
    """The torch dtype of ``model.dtype`` on ``device``: ``auto`` is bfloat16 on GPUs that support
    it, float16 on older ones, float32 on the CPU."""
    import torch

    if dtype == "auto":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device == "cuda":
            return torch.float16
        return torch.float32  # CPU half-precision matmuls are slow and lossy; train in fp32 there
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def check_bitsandbytes() -> str | None:
    """None when bitsandbytes can quantize here, else the reason it cannot."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError or a broken native library
        return f"bitsandbytes is not usable here ({type(e).__name__}: {e}). Install it with `pip install bitsandbytes`."
    return None


def quantization_config(quant: str | None, compute_dtype, double_quant: bool = True, quant_storage=None):
    """bitsandbytes' config for ``quant``. ``quant_storage``: the dtype the packed 4-bit weights are
    stored in; FSDP shards only floating tensors of one dtype per unit, so a sharded QLoRA run
    stores them in the compute dtype (bitsandbytes' "FSDP-QLoRA" guide)."""
    if not quant:
        return None
    from transformers import BitsAndBytesConfig

    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    extra = {"bnb_4bit_quant_storage": quant_storage} if quant_storage is not None else {}
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant,
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=compute_dtype,
                              **extra)


def load_model(model_cfg, quantization: str | None = None, device: str | None = None, sharded: bool = False):
    """Load the base model for training or inference. ``quantization`` overrides model_cfg's.

    ``sharded``: FSDP/DeepSpeed will place and shard the weights when the Trainer prepares the
    model, so they stay where transformers loads them (the CPU, or the meta device on ranks
    other than 0 with FSDP's RAM-efficient loading) in ``device``'s dtype; 4-bit weights are
    stored in that dtype so that FSDP can shard them."""
    import torch
    from transformers import AutoModelForCausalLM

    quant = quantization if quantization is not None else model_cfg.quantization
    src = resolve_source(model_cfg.name_or_path, model_cfg.offline)
    if src.kind in ("folder", "hub", "demo") and not has_weights(Path(src.path)):
        raise ModelError(f"Model folder {src.path} has a config.json but no weights "
                         f"(looked for {', '.join(WEIGHT_FILES[:3])} or *.safetensors).")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(model_cfg.dtype, device)
    if quant:
        reason = check_bitsandbytes()
        if reason:
            raise ModelError(f"model.quantization={quant}: {reason}")
    kwargs = {"dtype": dtype}
    if model_cfg.attn_implementation != "auto":
        if model_cfg.attn_implementation == "sdpa_varlen":  # ours: transformers must know it first
            register_attention()
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    qc = quantization_config(quant, dtype if dtype != torch.float32 or device == "cpu" else torch.float32,
                             model_cfg.double_quant, quant_storage=dtype if sharded else None)
    if qc is not None:
        kwargs["quantization_config"] = qc
        if not sharded:
            # This rank's own GPU (cuda:LOCAL_RANK once the process group set it), not GPU 0.
            kwargs["device_map"] = {"": torch.cuda.current_device()} if device == "cuda" else {"": "cpu"}
    if src.kind == "gguf":
        kwargs["gguf_file"] = src.gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(src.path, trust_remote_code=model_cfg.trust_remote_code,
                                                     **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"Could not load {src.display}: {e}") from None
    if src.kind == "gguf" and hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # dequantized on load; see _convert_gguf
        model.hf_quantizer = None
    if qc is None and device == "cuda" and not sharded:
        model.to(device)
    return model
