"""What an export or the playground needs to know about a run directory.

A run directory (written by engine.training) holds ``run.yaml``, ``events.jsonl``, the final
``adapter/`` and ``checkpoints/checkpoint-N/``. A bare adapter folder is accepted too
(``adapter_config.json`` only, peft's or ours): its base model and method are read from the
adapter config, so ``peft-studio export some/adapter --merge`` works on adapters trained
elsewhere. A full fine-tune saves a complete model folder where the others save an adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.export.atomic import ExportError

RUN_FILE = "run.yaml"
EVENTS_FILE = "events.jsonl"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
ADAPTER_CONFIG = "adapter_config.json"
BEST_DIR = "best"        # the best checkpoint by evaluation loss, when the run kept one
BASE = "base"            # the base model itself, no adapter

@dataclass
class RunInfo:
    run_dir: Path
    config: RunConfig
    adapter_dir: Path | None                 # the final adapter, when the run saved one
    checkpoints: list[Path] = field(default_factory=list)   # oldest first
    metrics: dict = field(default_factory=dict)
    status: str | None = None
    is_bare_adapter: bool = False
    best: Path | None = None                 # best/ or the events' best_checkpoint, when known

    @property
    def method(self):
        from engine.methods import get_method

        return get_method(self.config.method.name)

    def saved_method(self, saved_dir: Path):
        """The method that wrote ``saved_dir`` (it may differ from run.yaml's: qlora saves lora)."""
        from engine.methods import get_method
        from engine.methods.storage import method_of

        return get_method(method_of(saved_dir) or self.config.method.name)

    @property
    def gives_full_model(self) -> bool:
        """Whether a merged model / GGUF can be made: the adapter folds into the weights, or the
        run is a full fine-tune that already is a whole model."""
        return self.method.can_merge or self.method.saves_full_model

    @property
    def name(self) -> str:
        return self.run_dir.name

    def sources(self) -> list[tuple[str, Path]]:
        """Every adapter of this run by label: ``final`` first, ``best`` (when the run kept one),
        then checkpoints newest first."""
        out = []
        if self.adapter_dir is not None:
            out.append(("final", self.adapter_dir))
        if self.best is not None:
            out.append(("best", self.best))
        out.extend((c.name, c) for c in reversed(self.checkpoints))
        return out

    def choices(self) -> list[str]:
        """Every export source by name: ``final``, ``best`` (when known), checkpoints newest
        first, and ``base`` (the base model without the adapter)."""
        out = ["final"] if (self.adapter_dir is not None or self.checkpoints) else []
        if self.best is not None:
            out.append("best")
        out.extend(c.name for c in reversed(self.checkpoints))
        if not (self.is_bare_adapter and self.method.saves_full_model):  # a bare full model is its own base
            out.append(BASE)
        return out

    def adapter(self, which: str | None = None) -> Path:
        """Resolve ``final`` (default), ``best``, ``latest`` (newest checkpoint), ``checkpoint-N``,
        ``N`` or a path to an adapter folder. ``base`` is not an adapter: see ``is_base``."""
        which = (which or "final").strip()
        if which == "best":
            if self.best is None:
                raise ExportError(f"{self.run_dir} has no best checkpoint (it is kept when the run evaluates; "
                                  "see train.eval_steps). Choose final or a checkpoint.")
            return self.best
        if which == "final":
            found = self.adapter_dir or (self.checkpoints[-1] if self.checkpoints else None)  # engine.runs.final_adapter
            if found is not None:
                return found
            raise ExportError(f"{self.run_dir} has no adapter yet: the run saved neither {ADAPTER_DIR}/ nor a "
                              "checkpoint. Wait for it to finish, or enable train.save_steps.")
        if which == "latest":
            if not self.checkpoints:
                raise ExportError(f"{self.run_dir} has no checkpoints.")
            return self.checkpoints[-1]
        name = f"checkpoint-{which}" if which.isdigit() else which
        for c in self.checkpoints:
            if c.name == name:
                return c
        p = Path(which).expanduser()
        if (p / ADAPTER_CONFIG).exists():
            return p
        valid = ["final", "latest"] + (["best"] if self.best else []) + [c.name for c in self.checkpoints] + [BASE]
        raise ExportError(f"No adapter {which!r} in {self.run_dir}; choose one of: {', '.join(valid)}.")


def is_base(which: str | None) -> bool:
    """Whether an export source names the base model (no adapter)."""
    return (which or "").strip().lower() == BASE


def _has_adapter(p: Path) -> bool:
    """An adapter folder, or the complete model folder a full fine-tune saves instead."""
    from engine.runs import has_adapter

    return has_adapter(p)


def _metrics_from_events(run_dir: Path) -> tuple[dict, str | None]:
    from engine.events import read_events

    metrics: dict = {}
    status = None
    for ev in read_events(run_dir / EVENTS_FILE):
        kind = ev.get("event")
        if ev.get("best_checkpoint"):
            metrics["best_checkpoint"] = ev["best_checkpoint"]
        if kind == "eval" and ev.get("eval_loss") is not None:
            metrics["eval_loss"] = ev["eval_loss"]
        elif kind == "step" and ev.get("loss") is not None:
            metrics["final_loss"] = ev["loss"]
            metrics["steps"] = ev.get("step")
        elif kind in ("finished", "stopped", "failed"):
            status = kind
            for k, v in (ev.get("metrics") or {}).items():
                if v is not None:
                    metrics[k] = v
            if ev.get("forgetting"):
                metrics["forgetting"] = ev["forgetting"]
            if ev.get("step") is not None:
                metrics["steps"] = ev["step"]
        elif kind == "started":
            for k in ("train_examples", "eval_examples", "data_format", "trainable_params", "total_params",
                      "device"):
                if ev.get(k) is not None:
                    metrics[k] = ev[k]
    if "global_step" in metrics:
        metrics.setdefault("steps", metrics["global_step"])
    return metrics, status


def config_from_adapter(adapter_dir: Path) -> RunConfig:
    """A RunConfig describing a bare adapter folder (base model and method from its config), or
    a bare full fine-tune's model folder (which is its own base)."""
    from engine.methods.storage import STUDIO_KEY, is_model_folder, method_of

    if not (adapter_dir / ADAPTER_CONFIG).exists() and is_model_folder(adapter_dir):
        return RunConfig.from_dict({"model": {"name_or_path": str(adapter_dir)}, "method": {"name": "full"},
                                    "output_dir": str(adapter_dir)})
    try:
        ac = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        method = method_of(adapter_dir)
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{adapter_dir / ADAPTER_CONFIG} cannot be read: {e}") from None
    if method is None:
        kind = ac.get("peft_type") or ac.get(STUDIO_KEY) or "?"
        raise ExportError(f"{adapter_dir}: adapter type {kind} is not one PEFT Studio knows; it was written by "
                          "a newer peft or another tool.")
    base = ac.get("base_model_name_or_path")
    if not base:
        raise ExportError(f"{adapter_dir / ADAPTER_CONFIG} does not name its base model "
                          "(base_model_name_or_path); pass the base explicitly.")
    method_fields = {"name": method}
    if STUDIO_KEY in ac:  # our own formats keep the method's parameters: the model card shows them
        from engine.methods import PARAMS

        known = set(PARAMS[method].__dataclass_fields__)
        method_fields.update({k: v for k, v in (ac.get("params") or {}).items() if k in known})
    try:
        return RunConfig.from_dict({"model": {"name_or_path": base}, "method": method_fields,
                                    "output_dir": str(adapter_dir)})
    except ConfigError:
        return RunConfig.from_dict({"model": {"name_or_path": base}, "method": {"name": method},
                                    "output_dir": str(adapter_dir)})


def load_run(path: str | Path) -> RunInfo:
    """Read a run directory (or a bare adapter folder). Raises ExportError with a plain message."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ExportError(f"{p} does not exist.")
    if not p.is_dir():
        raise ExportError(f"{p} is a file; give the run folder (the one holding run.yaml).")
    if not (p / RUN_FILE).exists():
        if _has_adapter(p):
            return RunInfo(run_dir=p, config=config_from_adapter(p), adapter_dir=p, is_bare_adapter=True)
        raise ExportError(f"{p} is not a run folder (no {RUN_FILE}) nor a peft adapter folder "
                          f"(no {ADAPTER_CONFIG}).")
    from engine.runs import checkpoint_dirs

    cfg = RunConfig.load(p / RUN_FILE)
    adapter = p / ADAPTER_DIR
    ckpts = checkpoint_dirs(p)
    metrics, status = _metrics_from_events(p)
    if "forgetting" not in metrics:  # measured later by `peft-studio eval`
        from engine.runs import read_forgetting

        found = read_forgetting(p, None)
        if found:
            metrics["forgetting"] = found
    return RunInfo(run_dir=p, config=cfg, adapter_dir=adapter if _has_adapter(adapter) else None,
                   checkpoints=ckpts, metrics=metrics, status=status, best=_best(p, ckpts, metrics))


def _best(run_dir: Path, ckpts: list[Path], metrics: dict) -> Path | None:
    """The best checkpoint: a ``best/`` folder, or the events' ``best_checkpoint`` (a name or path)."""
    if _has_adapter(run_dir / BEST_DIR):
        return run_dir / BEST_DIR
    named = metrics.get("best_checkpoint")
    if named:
        for c in ckpts:
            if c.name == Path(str(named)).name:
                return c
        p = Path(str(named))
        p = p if p.is_absolute() else run_dir / p
        if _has_adapter(p):
            return p
    return None
