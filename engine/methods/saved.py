"""Saving, loading and merging what a method trained, whatever the method.

peft tuners save themselves (``adapter_config.json`` + ``adapter_model.safetensors``, loaded by
plain ``peft.PeftModel.from_pretrained``). The methods that are not peft tuners keep the same
look so that every tool that recognises an adapter folder recognises theirs:

* BitFit, selective and bottleneck adapters: ``adapter_model.safetensors`` holds only the tensors
  the method trained or added, and ``adapter_config.json`` names the method (``studio_method``),
  its parameters and the base model. ``load_trained`` restores them onto a freshly loaded base.
* full fine-tuning: a complete model folder that plain ``AutoModelForCausalLM`` loads.

Only standard formats (JSON, safetensors) are written; no pickles.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STUDIO_KEY = "studio_method"
FORMAT_VERSION = 1


class _Saver:
    """The object ``engine.train.save_adapter_atomic`` saves when a method saves itself:
    it only needs ``save_pretrained(dir, **kwargs)``."""

    def __init__(self, model, spec):
        self.model, self.spec = model, spec

    def save_pretrained(self, directory, **kwargs):
        self.spec.save(self.model, Path(directory))


def saveable(model, spec):
    """``model`` itself when it saves the standard way, else a wrapper running ``spec.save``."""
    return _Saver(model, spec) if spec.save is not None else model


# ---- the changed-tensors format (BitFit, selective, bottleneck) ------------------------------

def write_tensors(directory: Path, method: str, params: dict, tensors: dict, base_model: str | None,
                  extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous storage; the tensors are small copies anyway.
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(clean, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt", STUDIO_KEY: method})
    meta = {STUDIO_KEY: method, "format_version": FORMAT_VERSION, "base_model_name_or_path": base_model,
            "params": params, "tensors": sorted(clean), **(extra or {})}
    (directory / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")


def read_meta(directory: Path) -> dict:
    path = Path(directory) / ADAPTER_CONFIG
    if not path.exists():
        raise ConfigError("", f"{directory} has no {ADAPTER_CONFIG}: it is not an adapter folder")
    return json.loads(path.read_text(encoding="utf-8"))


def read_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / ADAPTER_WEIGHTS))


def tensor_names(directory: Path) -> list[str]:
    """The names of the saved tensors, read from the file's header (no tensor data loaded)."""
    from safetensors import safe_open

    with safe_open(str(Path(directory) / ADAPTER_WEIGHTS), framework="pt") as f:
        return list(f.keys())


def trainable_tensors(model) -> dict:
    """The parameters that trained, by their names in the base model (tied weights once)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def restore_tensors(model, tensors: dict, directory: Path):
    """Copy saved tensors onto ``model`` in place; every name must exist with the same shape."""
    import torch

    params = dict(model.named_parameters(remove_duplicate=False))
    missing = [k for k in tensors if k not in params]
    if missing:
        raise ConfigError("", f"{directory} does not fit this base model: it has no parameters "
                          f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    with torch.no_grad():
        for name, value in tensors.items():
            p = params[name]
            if tuple(p.shape) != tuple(value.shape):
                raise ConfigError("", f"{directory}: {name} has shape {tuple(value.shape)}, the base model "
                                  f"{tuple(p.shape)}; it was trained on another model")
            p.copy_(value.to(device=p.device, dtype=p.dtype))
    return model


def base_name(model) -> str | None:
    return getattr(getattr(model, "config", None), "name_or_path", None) or None


def is_model_folder(directory: str | Path) -> bool:
    """A complete transformers model folder (what full fine-tuning saves)."""
    d = Path(directory)
    return (d / "config.json").exists() and any(d.glob("*.safetensors"))


# ---- dispatch ---------------------------------------------------------------------------------

_PEFT_TYPES = {"LORA": "lora", "IA3": "ia3", "PROMPT_TUNING": "prompt_tuning", "P_TUNING": "p_tuning",
               "PREFIX_TUNING": "prefix_tuning"}


def method_of(directory: str | Path) -> str | None:
    """The method that produced a saved adapter or model folder (None when unknown)."""
    d = Path(directory)
    if (d / ADAPTER_CONFIG).exists():
        meta = json.loads((d / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        if STUDIO_KEY in meta:
            return meta[STUDIO_KEY]
        ptype = str(meta.get("peft_type") or "").upper()
        if ptype == "LORA" and meta.get("use_dora"):
            return "dora"
        if ptype in _PEFT_TYPES:
            return _PEFT_TYPES[ptype]
        from engine.methods.params_more import PEFT_METHODS

        for name, entry in PEFT_METHODS.items():
            if entry.peft_type == ptype:
                return name
        return None
    if is_model_folder(d):
        return "full"
    return None


def load_trained(base_model, directory: str | Path):
    """Put a saved adapter onto ``base_model`` (or load a full fine-tune's folder) for inference."""
    from engine.methods import get_method

    d = Path(directory)
    name = method_of(d)
    if name is not None:
        spec = get_method(name)
        if spec.load is not None:
            return spec.load(base_model, d)
    from peft import PeftModel

    if name is None and not (d / ADAPTER_CONFIG).exists():
        raise ConfigError("", f"{d} holds neither an adapter ({ADAPTER_CONFIG}) nor a model (config.json)")
    return PeftModel.from_pretrained(base_model, str(d))


def check_merge(method: str) -> None:
    """Refuse, before any weights load, to merge a method that cannot be merged."""
    from engine.methods import get_method

    spec = get_method(method)
    if not spec.can_merge:
        why = spec.merge_note or "its adapter is not a change to the base weights"
        raise ConfigError("method.name", f"{spec.title} cannot be merged into the base model: {why}", method)


def merge_trained(model, method: str):
    """A plain transformers model with the method folded into the weights."""
    from engine.methods import get_method

    check_merge(method)
    spec = get_method(method)
    if spec.merge is not None:
        return spec.merge(model)
    return model.merge_and_unload()
