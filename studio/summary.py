"""What a run will be, in words: the line beside Start ("what will be trained") and the readable
default name of a run folder (``smollm2-lora-alpaca-1129-2215``).

Qt-free and engine-public only (engine.config, engine.methods, engine.models), so the run list,
the Training panel and the run controller all say the same thing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from engine.config import RunConfig
from engine.methods import get_method
from engine.models import DEMO_NAME

# File stems that say nothing about a data set: the folder's name says more (resources/demo/train.jsonl
# is "demo", not "train").
_GENERIC_STEMS = {"train", "training", "data", "dataset", "test", "valid", "validation", "all", "full"}
_AUTO_NAME = re.compile(r"-\d{4}-\d{4}(?:-\d+)?$")


def _slug(text: str, limit: int = 24) -> str:
    s = re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-.")
    return s[:limit].strip("-.") or "run"


def model_short_name(name_or_path: str) -> str:
    """``demo`` → ``smollm2``; ``Qwen/Qwen2.5-0.5B`` → ``qwen2.5``; a folder → its name's first word."""
    name = DEMO_NAME if name_or_path == "demo" else name_or_path
    leaf = Path(name.rstrip("/")).name or name
    leaf = re.sub(r"\.gguf$", "", leaf, flags=re.I)
    return _slug(leaf.split("-")[0] or leaf)


def data_short_name(path: str) -> str:
    """The data file's stem, or its folder's name when the stem is generic (``train``, ``data``)."""
    p = Path(path)
    stem = p.stem if p.suffix else p.name
    if stem.lower() in _GENERIC_STEMS and p.parent.name:
        stem = p.parent.name
    return _slug(stem or "data")


def run_name(model: str, method: str, data: str, when: float | None = None) -> str:
    """A readable default run folder name from the model (``name_or_path``), the method's name,
    the data path and the minute it starts: ``smollm2-lora-alpaca-1129-2215`` (month-day,
    hour-minute, local time)."""
    stamp = time.strftime("%m%d-%H%M", time.localtime(when if when is not None else time.time()))
    return f"{model_short_name(model or 'model')}-{_slug(method or 'method')}-{data_short_name(data or 'data')}-{stamp}"


def is_auto_name(name: str) -> bool:
    """True for a name ``run_name`` made (ends in ``-MMDD-HHMM``, maybe ``-2``)."""
    return bool(_AUTO_NAME.search(name))


def _steps_text(cfg: RunConfig) -> str:
    if cfg.train.max_steps > 0:
        return f"{cfg.train.max_steps:,} steps"
    return f"{cfg.train.epochs:g} epoch{'s' if cfg.train.epochs != 1 else ''}"


def is_demo_data(path: str) -> bool:
    from engine.data.demo import DEMO_TRAIN

    try:
        return Path(path).expanduser().resolve() == Path(DEMO_TRAIN).resolve() or \
            Path(path).as_posix().endswith("resources/demo/train.jsonl")
    except OSError:
        return False


def what_will_train(cfg: RunConfig | None) -> str:
    """One plain line: the method (and the adapter it continues), the model, the data and the length
    of the run Start begins."""
    if cfg is None:
        return "Start trains nothing until the marked fields are fixed."
    try:
        method = get_method(cfg.method.name).title
    except Exception:  # noqa: BLE001 - an unknown method is already marked in the form
        method = cfg.method.name
    model = f"the demo model ({DEMO_NAME})" if cfg.model.name_or_path == "demo" else cfg.model.name_or_path
    data = Path(cfg.data.path).name or "(no data file)"
    if is_demo_data(cfg.data.path):
        data += " (the bundled demo data)"
    start = getattr(cfg.method, "from_adapter", None)
    if start:  # method.from_adapter: the run continues that adapter
        method = f"{method} (continuing the adapter in {Path(start).name or start})"
    return f"Start trains {method} on {model} with {data}, {_steps_text(cfg)}."
