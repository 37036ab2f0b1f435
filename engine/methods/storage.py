"""Saving, loading and merging what a method trained, whatever the method.

peft tuners save themselves (``adapter_config.json`` + ``adapter_model.safetensors``, loaded by
plain ``peft.PeftModel.from_pretrained``). The methods that are not peft tuners keep the same
look so that every tool that recognises an adapter folder recognises theirs:

* BitFit, selective and bottleneck adapters: ``adapter_model.safetensors`` holds only the tensors
  the method trained or added, and ``adapter_config.json`` names the method (``studio_method``),
  its parameters and the base model. ``load_trained`` restores them onto a freshly loaded base.
* full fine-tuning: a complete model folder that plain ``AutoModelForCausalLM`` loads.

Every save goes through :func:`save_adapter_atomic` (a temporary folder renamed into place,
``engine.atomic``), so a crash never leaves half an adapter. Only standard formats (JSON,
safetensors) are written; no pickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from engine import atomic
from engine.errors import ConfigError
from engine.methods.peft.catalog import PEFT_METHODS
from engine.methods.registry import get_method

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STUDIO_KEY = "studio_method"
FORMAT_VERSION = 1


class _Saver:
    """The object :func:`save_adapter_atomic` saves when a method saves itself: it only needs
    ``save_pretrained(dir, **kwargs)``."""

    def __init__(self, model, spec):
        self.model, self.spec = model, spec

    def save_pretrained(self, directory, **kwargs):
        self.spec.save(self.model, Path(directory))


def saveable(model, spec):
    """``model`` itself when it saves the standard way, else a wrapper running ``spec.save``."""
    return _Saver(model, spec) if spec.save is not None else model


def save_adapter_atomic(model, tokenizer, target: Path, extra_files: dict[str, str] | None = None,
                        state_dict: dict | None = None) -> Path:
    """Save ``model`` (anything with ``save_pretrained``: a peft model, or :func:`saveable`'s
    wrapper) and ``tokenizer`` into ``target`` atomically; ``extra_files`` maps file names to
    text written beside them; ``state_dict``: the tensors gathered from a sharded run (peft keeps
    the adapter's keys). Returns ``target``."""
    with atomic.replace_dir(target) as tmp:
        extra = {"state_dict": state_dict} if state_dict is not None else {}
        adapters = getattr(model, "peft_config", None)
        if isinstance(adapters, dict) and len(adapters) > 1:
            # Only the adapter that trained: a preference run continuing an adapter also holds TRL's
            # frozen `ref` copy of its start (engine/training/preference.py).
            extra["selected_adapters"] = [model.active_adapter]
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return target


def load_model_folder(directory, dtype=None, device: str | None = None):
    """A complete model folder (what full fine-tuning saves) at ``dtype`` (a torch dtype or its
    name; None: as saved), on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype or "auto")
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


# ---- the changed-tensors format (BitFit, selective, bottleneck) ------------------------------

def freeze_except(model, chosen: list[str], method: str, params) -> None:
    """Train exactly the parameters named in ``chosen`` (full names, the model's own tensors)."""
    keep = set(chosen)
    for n, p in model.named_parameters(remove_duplicate=False):
        p.requires_grad_(n in keep)
    # save() needs the method's parameters; the trainable set itself is read from requires_grad.
    model.studio_method = {"name": method, "params": asdict(params)}


def save_changed(model, directory):
    """``MethodSpec.save`` of methods that train the model's own tensors (BitFit, selective):
    those tensors alone, named as in the base model."""
    info = getattr(model, "studio_method", None) or {"name": "selective", "params": {}}
    write_tensors(directory, info["name"], info["params"], trainable_tensors(model), base_name(model))


def load_changed(base_model, directory):
    """``MethodSpec.load`` for :func:`save_changed`'s folders: the tensors copied onto the base."""
    tensors = read_tensors(directory)
    restore_tensors(base_model, tensors, directory)
    for p in base_model.parameters():
        p.requires_grad_(False)
    return base_model


def merged(model):
    """``MethodSpec.merge`` for :func:`load_changed`: the restored tensors already are the weights."""
    return model


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


def _method_of_config(meta: dict) -> str | None:
    """The method of an adapter config (``adapter_config.json``'s contents, or a peft config's
    ``to_dict()``)."""
    if STUDIO_KEY in meta:
        return meta[STUDIO_KEY]
    ptype = str(getattr(meta.get("peft_type"), "value", meta.get("peft_type")) or "").upper()
    if ptype == "LORA" and meta.get("use_dora"):
        return "dora"
    if ptype in _PEFT_TYPES:
        return _PEFT_TYPES[ptype]
    for name, entry in PEFT_METHODS.items():
        if entry.peft_type == ptype:
            return name
    return None


def method_of(directory: str | Path) -> str | None:
    """The method that produced a saved adapter or model folder (None when unknown)."""
    d = Path(directory)
    if (d / ADAPTER_CONFIG).exists():
        return _method_of_config(json.loads((d / ADAPTER_CONFIG).read_text(encoding="utf-8")))
    if is_model_folder(d):
        return "full"
    return None


def spec_of_model(model):
    """The MethodSpec of the method active in a loaded ``model`` — a peft model (its active
    adapter's config), or a model a method marked (``studio_method``: BitFit, selective) — or
    None for a plain model (a base, a full fine-tune, a peft model inside ``disable_adapter``)."""
    from engine.methods.registry import REGISTRY

    conf = getattr(model, "active_peft_config", None) if hasattr(model, "get_base_model") else None
    if conf is not None:
        if getattr(model, "_adapters_disabled", False):
            return None
        name = _method_of_config(conf.to_dict())
    else:
        name = (getattr(model, "studio_method", None) or {}).get("name")
    return REGISTRY.get(name) if name else None


def load_trained(base_model, directory: str | Path):
    """Put a saved adapter onto ``base_model`` (or load a full fine-tune's folder) for inference."""
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
    spec = get_method(method)
    if not spec.can_merge:
        why = spec.merge_note or "its adapter is not a change to the base weights"
        raise ConfigError("method.name", f"{spec.title} cannot be merged into the base model: {why}", method)


def merge_trained(model, method: str):
    """A plain transformers model with the method folded into the weights."""
    check_merge(method)
    spec = get_method(method)
    if spec.merge is not None:
        return spec.merge(model)
    return model.merge_and_unload()
