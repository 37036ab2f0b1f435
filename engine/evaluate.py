"""Evaluate any run, exported adapter or merged model after the fact: the forgetting check
(``peft-studio eval``) and lm-evaluation-harness benchmarks (``peft-studio bench``), base vs tuned.

What is evaluated comes from ``engine.export.runinfo.load_run``: a run folder (its ``final``,
``best`` or a checkpoint), a bare adapter folder, or a complete model folder (a full fine-tune
or a merged export), whose base must be named (``base=``) unless its model card says it.
The base side of the forgetting check comes from the same per-base-model cache as training's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from engine import atomic
from engine.evals import forgetting as fg
from engine.export.atomic import ExportError
from engine.export.runinfo import RunInfo, load_run
from engine.modelcard import DEMO_HUB_ID
from engine.runs import FORGETTING_FILE, RunIndex

BENCH_FILE = "bench.json"


@dataclasses.dataclass
class Target:
    """What is evaluated: the run info, the tuned weights' folder and the base model's name."""

    info: RunInfo
    tuned_dir: Path
    base: str
    label: str


def _card_base(folder: Path) -> str | None:
    """The base named in a model card's front matter (``base_model``), the demo's id as ``demo``."""
    import yaml

    readme = folder / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    base = meta.get("base_model")
    return "demo" if base == DEMO_HUB_ID else base


def resolve_target(path: str | Path, which: str = "final", base: str | None = None) -> Target:
    """The run/adapter/model folder ``path`` as something to evaluate. ExportError (a UserError)
    for a folder that is none of them, or a model folder whose base is not known."""
    info = load_run(path)
    if info.is_bare_adapter and info.method.saves_full_model:
        # A complete model folder (a merged export or a full fine-tune): its base is not in it.
        name = base or _card_base(info.run_dir)
        if not name:
            raise ExportError(f"{info.run_dir} is a complete model; name the base model it was tuned from with "
                              "--base (e.g. --base demo).")
        info.config = dataclasses.replace(info.config, model=dataclasses.replace(info.config.model, name_or_path=name))
        return Target(info, info.run_dir, name, "model")
    if base:
        info.config.model.name_or_path = base
    return Target(info, info.adapter(which), info.config.model.name_or_path, which)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_pair(target: Target):
    """(base model, tokenizer, quantization) loaded as the run trained (a QLoRA run on its 4-bit base)."""
    from engine.export.loading import load_base, load_tokenizer_for
    from engine.methods import effective_quantization

    info = target.info
    tok = load_tokenizer_for(info, target.tuned_dir)
    base = load_base(info, dtype=info.config.model.dtype, quantized=True, device=_device())
    return base, tok, effective_quantization(info.config) or None


def _tuned(base_model, target: Target):
    from engine.methods.storage import load_model_folder, load_trained

    if target.label == "model":
        return load_model_folder(target.tuned_dir, device=_device())
    return load_trained(base_model, target.tuned_dir)


def forgetting_check(path: str | Path, which: str = "final", base: str | None = None,
                     settings: fg.Settings | None = None, log=None) -> dict:
    """The forgetting check of ``path`` (see the module docstring). Returns ``{"forgetting": dict,
    "target", "which", "base_cached", "seconds"}``; for a run folder also writes
    ``<run>/forgetting.json`` and refreshes the run's index row."""
    log = log or (lambda msg: None)
    settings = settings or fg.Settings()
    t0 = time.time()
    target = resolve_target(path, which, base)
    log(f"Loading {target.base} …")
    base_model, tok, quant = _load_pair(target)
    key = fg.base_key(target.info.config.model, quant, _device(), settings)
    base_fig = fg.cached_base(key)
    cached = base_fig is not None
    if base_fig is None:
        log(f"Measuring the base model on {settings.passages} general passages and {settings.prompts} prompts …")
        base_fig = fg.measure(base_model, tok, settings)
        fg.store_base(key, base_fig)
    else:
        log("Base model: from the cache.")
    log(f"Loading {target.label} from {target.tuned_dir} …")
    tuned = _tuned(base_model, target)
    log("Measuring the tuned model …")
    result = fg.compare(base_fig, fg.measure(tuned, tok, settings), settings)
    out = {"forgetting": result, "target": str(target.tuned_dir), "which": target.label, "base": target.base,
           "base_cached": cached, "seconds": time.time() - t0}
    if not target.info.is_bare_adapter:
        atomic.write_text(target.info.run_dir / FORGETTING_FILE, json.dumps(out, indent=2))
        try:
            RunIndex().record(target.info.run_dir)
        except Exception as e:  # the index is a convenience
            log(f"could not update the run index: {e}")
    return out


def bench(path: str | Path, tasks: list[str], include_path: str | None = None, limit: float | None = None,
          which: str = "final", base: str | None = None, batch_size: int = 8, log=None) -> dict:
    """lm-evaluation-harness ``tasks`` on the base and the tuned model. Returns ``{"tasks",
    "base": {task: {metric: value}}, "tuned": …}``; for a run folder also writes ``<run>/bench.json``.
    ExportError when lm-eval is not installed or a task is unknown."""
    from engine.evals.bench import run_tasks

    log = log or (lambda msg: None)
    target = resolve_target(path, which, base)
    log(f"Loading {target.base} …")
    base_model, tok, _ = _load_pair(target)
    log(f"Base model: {', '.join(tasks)} …")
    base_scores = run_tasks(base_model, tok, tasks, include_path, limit, batch_size)
    tuned = _tuned(base_model, target)
    log(f"Tuned model ({target.label}): {', '.join(tasks)} …")
    tuned_scores = run_tasks(tuned, tok, tasks, include_path, limit, batch_size)
    out = {"tasks": tasks, "which": target.label, "target": str(target.tuned_dir), "limit": limit,
           "base": base_scores, "tuned": tuned_scores}
    if not target.info.is_bare_adapter:
        atomic.write_text(target.info.run_dir / BENCH_FILE, json.dumps(out, indent=2))
    return out
