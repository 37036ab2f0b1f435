"""Resuming a run, safely: what may change, what may not, and a run that is already complete.

A checkpoint holds the adapter's weights, the optimizer's moments, the schedule's position and
the data loader's place in the data. So a resume can only continue with the settings that made
them: a different rank does not fit the saved weights, a different target list does not fit the
optimizer's moments, a different batch size or data file would skip the wrong examples. Every
run-file field is therefore *fixed* on resume unless it is listed in :data:`MAY_CHANGE` (each
with what a change does); a changed fixed field is refused before any weights load, naming the
field and both values, and nothing in the run folder is touched (``docs/resume.md`` lists the
same table: a test keeps the two equal).

A run whose checkpoint already reached the last step is *complete*: resuming it changes nothing
and says so (``AlreadyComplete``), where the Trainer would re-save the adapter and report a
loss of 0.0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.methods import effective_quantization
from engine.training.arguments import CHECKPOINT_DIR

RUN_FILE = "run.yaml"

# Fields that may differ between a run and its resume, and what the change does. Everything else
# is fixed (the safe default for a field added later).
MAY_CHANGE: dict[str, str] = {
    "train.lr": "the new peak learning rate applies from the resumed step on; the schedule keeps "
                "its shape and position (warm-up, decay) and is scaled to the new peak",
    "train.max_steps": "extends (or shortens) the run; the schedule is laid out again over the new "
                       "total, so a decaying learning rate decays to the new end",
    "train.epochs": "as train.max_steps, for runs that count epochs",
    "train.eval_steps": "evaluation frequency from the resumed step on",
    "train.save_steps": "checkpoint frequency from the resumed step on",
    "train.save_total_limit": "how many checkpoints are kept",
    "train.logging_steps": "how often a step event is reported",
    "train.resume_from": "which checkpoint to continue from",
    "train.dataloader_workers": "background processes preparing batches (same batches)",
    "train.max_grad_norm": "gradient clipping from the resumed step on",
    "train.gradient_checkpointing": "memory for time: the same numbers are computed",
    "train.loss_impl": "how the same loss is computed (chunked, fused or standard)",
    "train.loss_chunk_tokens": "the chunk size of the chunked loss (same loss)",
    "train.torch_compile": "compilation of the same model",
    "model.attn_implementation": "the attention kernel (the same attention)",
    "model.offline": "whether the hub may be contacted",
    "output_dir": "where the run folder is (a checkpoint named in train.resume_from is compared with "
                  "its own run's run.yaml)",
}


class AlreadyComplete(Exception):
    """The run's checkpoint is at (or past) its last step: there is nothing to resume. Not an
    error: ``str(e)`` says "already complete (N/N steps)"."""

    def __init__(self, done: int, total: int, run_dir: Path):
        self.done, self.total, self.run_dir = done, total, run_dir
        super().__init__(f"{run_dir} is already complete ({done}/{total} steps); nothing was changed. To "
                         f"train further, raise train.max_steps (or train.epochs) and resume again.")


@dataclass
class Resume:
    """A checked resume: the checkpoint folder and the configuration it was trained with."""

    checkpoint: str
    previous: RunConfig | None       # the run's run.yaml (None: a checkpoint from elsewhere)
    step: int                        # optimizer steps the checkpoint has done


def _flat(cfg: RunConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    for section, value in cfg.to_dict().items():
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{section}.{k}"] = v
        else:
            out[section] = value
    # Quantization as the run loads it: qlora implies nf4, so {qlora, null} and {qlora, nf4} agree.
    out["model.quantization"] = effective_quantization(cfg)
    return out


def changed_fixed_fields(previous: RunConfig, cfg: RunConfig) -> list[tuple[str, object, object]]:
    """(field, value the run was trained with, value now) for every fixed field that differs."""
    old, new = _flat(previous), _flat(cfg)
    if old.get("method.name") != new.get("method.name"):
        return [("method.name", old.get("method.name"), new.get("method.name"))]  # all its fields differ
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if k not in MAY_CHANGE and old.get(k) != new.get(k)]


def _previous_config(checkpoint: Path, run_dir: Path) -> RunConfig | None:
    """The run.yaml of the run the checkpoint belongs to (``<run>/checkpoints/checkpoint-N``)."""
    for folder in (checkpoint.parent.parent, run_dir):
        if (folder / RUN_FILE).exists():
            return RunConfig.load(folder / RUN_FILE)
    return None


def _trainer_state(checkpoint: Path) -> dict:
    try:
        return json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def check_resume(cfg: RunConfig, run_dir: Path, checkpoint: str) -> Resume:
    """Check that ``cfg`` may continue ``checkpoint``; reads only small files (no weights).

    Raises ConfigError naming the first fixed field that changed (both values), and
    AlreadyComplete when the checkpoint is at the run's last step."""
    ckpt = Path(checkpoint)
    previous = _previous_config(ckpt, run_dir)
    if previous is not None:
        changed = changed_fixed_fields(previous, cfg)
        if changed:
            field, was, now = changed[0]
            more = f" (also changed: {', '.join(f for f, _, _ in changed[1:])})" if len(changed) > 1 else ""
            raise ConfigError(field, f"was {was!r} when this run trained its checkpoints and is {now!r} now{more}. "
                              f"A checkpoint continues only with the settings it was trained with: set {field} "
                              f"back to {was!r}, or start a new run (another output_dir) instead of resuming. "
                              "Settings that may change on resume: " + ", ".join(MAY_CHANGE))
    state = _trainer_state(ckpt)
    step = int(state.get("global_step") or 0)
    total = _planned_total(cfg, state)
    if total is not None and step >= total:
        raise AlreadyComplete(step, total, run_dir)
    return Resume(str(ckpt), previous, step)


def _planned_total(cfg: RunConfig, state: dict) -> int | None:
    """The optimizer steps the resumed run will end at, when it is known without the data:
    train.max_steps, or the checkpoint's own total when the epochs did not change."""
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    if state.get("max_steps") and float(state.get("num_train_epochs") or -1) == float(cfg.train.epochs):
        return int(state["max_steps"])
    return None


def completed_run(cfg: RunConfig, run_dir: Path) -> tuple[int, int] | None:
    """(done, total) when the run folder holds a finished run of ``cfg``'s length and no
    checkpoint to resume (a run saved only at its end), else None."""
    from engine.events import read_events

    events = read_events(run_dir / "events.jsonl")
    started = [e for e in events if e["event"] == "started"]
    finished = [e for e in events if e["event"] == "finished"]
    if not started or not finished or finished[-1]["time"] < started[-1]["time"]:
        return None
    done = int(finished[-1].get("step") or 0)
    total = cfg.train.max_steps if cfg.train.max_steps > 0 else int(started[-1].get("total_steps") or 0)
    return (done, total) if total and done >= total else None


def find_checkpoint(run_dir: Path, resume_from: str | None) -> str | None:
    """The checkpoint folder ``train.resume_from`` names (``latest``: the newest complete one in
    the run folder); ConfigError when there is none."""
    if not resume_from:
        return None
    if resume_from == "latest":
        ckpts = sorted((run_dir / CHECKPOINT_DIR).glob("checkpoint-*"),
                       key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
        complete = [c for c in ckpts if (c / "trainer_state.json").exists()]
        if not complete:
            raise ConfigError("train.resume_from", f"no complete checkpoint in {run_dir / CHECKPOINT_DIR}",
                              resume_from)
        return str(complete[-1])
    p = Path(resume_from)
    if not (p / "trainer_state.json").exists():
        raise ConfigError("train.resume_from", "is not a checkpoint folder (no trainer_state.json)", resume_from)
    return str(p)


def plan_resume(cfg: RunConfig, run_dir: Path) -> tuple[str | None, float]:
    """(the checkpoint to continue from or None for a fresh run, the factor by which the learning
    rate's peak changed). Reads only small files: call it before any data or weights load, and
    before anything writes into the run folder (a launcher too). Raises ConfigError for a resume
    that cannot continue, AlreadyComplete for a run already at its last step."""
    if not cfg.train.resume_from:
        return None, 1.0
    try:
        checkpoint = find_checkpoint(run_dir, cfg.train.resume_from)
    except ConfigError:
        done = completed_run(cfg, run_dir)  # a run saved only at its end has no checkpoint
        if done:
            raise AlreadyComplete(done[0], done[1], run_dir) from None
        raise
    resume = check_resume(cfg, run_dir, checkpoint)
    factor = 1.0
    if resume.previous is not None and resume.previous.train.lr > 0:
        factor = cfg.train.lr / resume.previous.train.lr
    return resume.checkpoint, factor
