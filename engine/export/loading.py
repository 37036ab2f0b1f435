"""Loading a run's base model and tokenizer for merging, exporting and the playground."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from engine.export.atomic import ExportError
from engine.models import TOKENIZER_FILES  # noqa: F401  (one list, engine.models'; export modules read it here)

DTYPE_ALIASES = {"auto": "auto", "fp32": "float32", "f32": "float32", "float32": "float32",
                 "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "f16": "float16",
                 "float16": "float16", "half": "float16"}
MERGE_DTYPES = ("auto", "float32", "bfloat16", "float16")


def normalize_dtype(name: str | None) -> str:
    key = (name or "auto").strip().lower()
    if key not in DTYPE_ALIASES:
        raise ExportError(f"Unknown dtype {name!r}; choose one of auto, float32 (fp32), bfloat16 (bf16), "
                          "float16 (fp16).")
    return DTYPE_ALIASES[key]


def native_dtype(info) -> str:
    """The dtype the base checkpoint is stored in (what `auto` merges into); float32 if unknown."""
    from engine.models import ModelError, resolve_model_config

    try:
        cfg = resolve_model_config(info.config.model.name_or_path, info.config.model.trust_remote_code,
                                   info.config.model.offline)
    except ModelError:
        return "float32"
    d = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    name = str(d).replace("torch.", "") if d is not None else ""
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def load_base(info, dtype: str = "float32", quantized: bool = False, device: str | None = "cpu"):
    """The run's base model. ``quantized=False`` always loads full precision, whatever the run
    trained on: merging into 4-bit weights loses quality (DESIGN §4: |Δlogit| 0.24 vs 5e-7)."""
    from engine.methods import effective_quantization
    from engine.models import load_model

    dtype = normalize_dtype(dtype)
    if dtype == "auto":
        dtype = native_dtype(info)
    quant = effective_quantization(info.config) if quantized else None
    model_cfg = dataclasses.replace(info.config.model, dtype=dtype, quantization=None)
    model = load_model(model_cfg, quantization=quant or None, device=device)
    model.eval()
    return model


def load_tokenizer_for(info, adapter_dir: Path | None = None):
    """The tokenizer the run trained with: the adapter folder's copy first, else the base's."""
    from transformers import AutoTokenizer

    from engine.models import ensure_pad_token, load_tokenizer

    for d in (adapter_dir, info.adapter_dir):
        if d is not None and (Path(d) / "tokenizer_config.json").exists():
            try:
                return ensure_pad_token(AutoTokenizer.from_pretrained(d))
            except Exception:
                continue
    return load_tokenizer(info.config.model.name_or_path, info.config.model.trust_remote_code,
                          info.config.model.offline)


def save_base_tokenizer(info, dst: Path) -> None:
    """The run's base tokenizer, unchanged (no pad token added), into ``dst``."""
    from engine.models import BaseTokenizer

    m = info.config.model
    BaseTokenizer(m.name_or_path, m.trust_remote_code, m.offline).save_pretrained(dst)


def copy_tokenizer_files(src: Path, dst: Path) -> bool:
    copied = False
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
            copied = True
    return copied


def read_adapter_config(adapter_dir: Path) -> dict:
    try:
        return json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{adapter_dir}: cannot read adapter_config.json ({e}).") from None


def saved_config(saved_dir: Path) -> dict:
    """The adapter's config (for the model card); a full fine-tune's folder has none: {}."""
    if not (Path(saved_dir) / "adapter_config.json").exists():
        return {}
    return read_adapter_config(saved_dir)
