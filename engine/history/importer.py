"""``peft-studio runs import DIR``: a run made by a plain transformers or TRL script becomes a
read-only run in the index, with its curves.

The Trainer keeps its history in ``trainer_state.json`` (``log_history``: one entry per logged
step with ``loss``, ``learning_rate``, ``grad_norm``, one per evaluation with ``eval_loss`` and
the other ``eval_*`` metrics). Those entries are turned into our events (``step``, ``eval``, a
``started`` event marked ``imported`` and a terminal event) and written to a folder of their own
under the data folder (``<home>/imported/<name>-<hash>/events.jsonl``), so the imported folder
itself is never written to. The studio's monitor, the run list and ``runs compare`` read it
like any run.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from engine import atomic
from engine.errors import UserError
from engine.events import make_event
from engine.paths import home_dir
from engine.runs import RunIndex

STATE_FILE = "trainer_state.json"
SOURCE_FILE = "imported.json"


def _step_of(p: Path) -> int:
    m = re.search(r"(\d+)$", p.name)
    return int(m.group(1)) if m else -1


def find_trainer_state(folder: Path) -> Path:
    """The most advanced trainer_state.json of a Trainer output folder: the folder's own (written by
    ``trainer.save_state()``) or the newest ``checkpoint-N``'s. UserError when there is none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"runs import: {folder} is not a folder.")
    candidates = [folder / STATE_FILE] + sorted(folder.glob(f"checkpoint-*/{STATE_FILE}"),
                                                 key=lambda p: _step_of(p.parent))
    found = [p for p in candidates if p.exists()]
    if not found:
        raise UserError(f"runs import: {folder} has no {STATE_FILE} (nor checkpoint-N/{STATE_FILE}); give the "
                        "output_dir of a transformers or TRL Trainer run.")

    def global_step(p: Path) -> int:
        try:
            return int(json.loads(p.read_text(encoding="utf-8")).get("global_step") or 0)
        except (OSError, ValueError):
            return -1

    return max(found, key=global_step)


def _guess_config(folder: Path, state_path: Path) -> dict:
    """What can be read without running anything: the method and base from an adapter_config.json,
    else the model from config.json (never training_args.bin: a pickle)."""
    cfg: dict = {"model": {}, "method": {}, "train": {}}
    for d in (folder, state_path.parent):
        ac = d / "adapter_config.json"
        if ac.exists():
            try:
                a = json.loads(ac.read_text(encoding="utf-8"))
            except ValueError:
                continue
            cfg["model"]["name_or_path"] = a.get("base_model_name_or_path")
            cfg["method"]["name"] = str(a.get("peft_type") or "adapter").lower()
            for k in ("r", "lora_alpha", "target_modules", "num_virtual_tokens"):
                if a.get(k) is not None:
                    cfg["method"][k] = a[k]
            break
        mc = d / "config.json"
        if mc.exists():
            try:
                m = json.loads(mc.read_text(encoding="utf-8"))
            except ValueError:
                continue
            cfg["model"]["name_or_path"] = m.get("_name_or_path") or str(d)
            cfg["method"]["name"] = "full"
            break
    return cfg


def events_from_state(state: dict, folder: Path, config: dict, when: float) -> list[dict]:
    """Our events from a trainer_state.json dict (``when``: the time given to every event)."""
    history = state.get("log_history") or []
    max_steps = int(state.get("max_steps") or 0)
    events = [make_event("started", time=when, config=config, run_dir=str(folder), total_steps=max_steps,
                         method=(config.get("method") or {}).get("name"), resumed_from_step=0, imported=True)]
    last_loss = None
    for h in history:
        step = int(h.get("step") or 0)
        if "loss" in h:
            last_loss = h["loss"]
            events.append(make_event("step", time=when, step=step, total_steps=max_steps, epoch=h.get("epoch"),
                                     loss=h.get("loss"), lr=h.get("learning_rate"), grad_norm=h.get("grad_norm")))
        if "eval_loss" in h:
            events.append(make_event("eval", time=when, step=step, eval_loss=h["eval_loss"],
                                     metrics={k: v for k, v in h.items() if isinstance(v, (int, float))}))
    step = int(state.get("global_step") or 0)
    metrics = {"global_step": step, "final_loss": last_loss}
    train_loss = next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None)
    if train_loss is not None:
        metrics["train_loss"] = train_loss
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    if evals:
        metrics["eval_loss"] = evals[-1]
    if state.get("best_metric") is not None:
        metrics.update(best_metric="eval_loss", best_value=state["best_metric"])
    if max_steps and step < max_steps:
        events.append(make_event("stopped", time=when, step=step, run_dir=str(folder), adapter_dir=None,
                                 reason=f"imported: the Trainer's state ends at step {step} of {max_steps}",
                                 metrics=metrics))
    else:
        extra = {"best_checkpoint": state["best_model_checkpoint"]} if state.get("best_model_checkpoint") else {}
        events.append(make_event("finished", time=when, step=step, run_dir=str(folder), adapter_dir=str(folder),
                                 metrics=metrics, **extra))
    return events


def import_trainer_run(folder: str | Path, index: RunIndex | None = None) -> dict:
    """Import a Trainer output folder; returns its index row (``run_dir`` is the imported copy's
    folder, ``source`` the original). Importing the same folder again refreshes it."""
    from engine.events import dumps

    folder = Path(folder).expanduser().resolve()
    state_path = find_trainer_state(folder)
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"runs import: {state_path} is not valid JSON ({e}).") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise UserError(f"runs import: {state_path} has no log_history; is it a Trainer's trainer_state.json?")
    config = _guess_config(folder, state_path)
    target = home_dir() / "imported" / f"{folder.name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"
    events = events_from_state(state, folder, config, state_path.stat().st_mtime)
    target.mkdir(parents=True, exist_ok=True)
    atomic.write_text(target / "events.jsonl", "".join(dumps(e) + "\n" for e in events))
    atomic.write_text(target / SOURCE_FILE, json.dumps({"source": str(folder), "trainer_state": str(state_path)}))
    row = (index or RunIndex()).record(target)
    row["source"] = str(folder)
    return row
