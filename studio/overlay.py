"""The runs overlay: other runs' loss curves drawn over the monitor's run.

"History you can compare" in the window (issue 16): select runs in the Runs list and "Overlay in
monitor" draws their training loss (smoothed like the shown run's) and eval-loss points on the
monitor's loss plot, one colour each, named in the legend. The curves come from each run's
``events.jsonl`` (the same events ``peft-studio runs compare`` reads), so an imported Trainer run
overlays like any other.
"""

from __future__ import annotations

from pathlib import Path

from engine.events import read_events

# Distinct from the shown run's own colours (theme.SERIES train/eval), readable on both themes.
COLORS = ("#9b59b6", "#16a085", "#d35400", "#2c3e50", "#c0392b", "#7f8c8d")


def load_curves(state, run_dirs: list[str]) -> list[dict]:
    """Task: for each run folder, ``{run_dir, name, method, loss: [(step, loss)], eval: [(step,
    eval_loss)]}`` from its events.jsonl (steps in optimizer steps, losses in nats per token).
    A folder without events gives empty curves (named, so the legend says it has none)."""
    out = []
    for d in run_dirs:
        events = read_events(Path(d) / "events.jsonl")
        loss = [(e["step"], e["loss"]) for e in events
                if e.get("event") == "step" and e.get("step") is not None and e.get("loss") is not None]
        evals = [(e["step"], e["eval_loss"]) for e in events
                 if e.get("event") == "eval" and e.get("step") is not None and e.get("eval_loss") is not None]
        started = next((e for e in events if e.get("event") == "started"), {})
        method = started.get("method") or ((started.get("config") or {}).get("method") or {}).get("name") or ""
        out.append({"run_dir": str(d), "name": Path(d).name, "method": method, "loss": loss, "eval": evals})
    return out


def label(curve: dict) -> str:
    """The legend's name of an overlaid run: "folder (method)"."""
    return f"{curve['name']} ({curve['method']})" if curve.get("method") else curve["name"]
