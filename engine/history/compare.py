"""``peft-studio runs compare A B [C…]``: the run-file fields that differ, and the final and best
metrics (forgetting included), side by side.

Each run's settings come from its ``run.yaml`` (or, for an imported run, its started event's
config), flattened to dotted run-file keys (``train.lr``); its numbers from the run index's
summary of its events (engine.runs.summarize) and its last evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.events import read_events
from engine.runs import summarize


@dataclass
class Comparison:
    """``names``: one per run; ``differing``: (run-file key, one value per run) for every key whose
    values differ; ``metrics``: (label, one value per run), numbers or text (None: not known)."""

    names: list[str]
    run_dirs: list[str]
    differing: list[tuple[str, list]] = field(default_factory=list)
    metrics: list[tuple[str, list]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"runs": [{"name": n, "run_dir": d} for n, d in zip(self.names, self.run_dirs)],
                "differing": {k: v for k, v in self.differing}, "metrics": {k: v for k, v in self.metrics}}


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` → ``{"train.lr": 1e-3}`` (lists stay values)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in ("columns",):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _config(run_dir: Path, events: list[dict]) -> dict:
    import yaml

    p = run_dir / "run.yaml"
    if p.exists():
        try:
            return yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            pass
    started = next((e for e in events if e["event"] == "started"), {})
    return started.get("config") or {}


def _last_eval(events: list[dict]) -> dict:
    evals = [e for e in events if e["event"] == "eval"]
    return (evals[-1].get("metrics") or {}) if evals else {}


def compare_runs(run_dirs: list[str | Path]) -> Comparison:
    """Compare two or more run folders. UserError when fewer than two are given or one is not a
    run folder."""
    if len(run_dirs) < 2:
        raise UserError("runs compare: name at least two run folders, e.g. `peft-studio runs compare runs/a runs/b`.")
    dirs = []
    for d in run_dirs:
        p = Path(d).expanduser()
        if not (p / "events.jsonl").exists() and not (p / "run.yaml").exists():
            raise UserError(f"runs compare: {p} is not a run folder (no events.jsonl or run.yaml).")
        dirs.append(p)
    events = [read_events(d / "events.jsonl") for d in dirs]
    configs = [flatten(_config(d, ev)) for d, ev in zip(dirs, events)]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    differing = [(k, [c.get(k) for c in configs]) for k in keys
                 if any(c.get(k) != configs[0].get(k) for c in configs[1:])]
    sums = [summarize(d) for d in dirs]
    last = [_last_eval(ev) for ev in events]
    rows: list[tuple[str, list]] = [
        ("status", [s["status"] for s in sums]),
        ("steps", [s["steps"] for s in sums]),
        ("final train loss", [s["final_loss"] for s in sums]),
        ("final eval loss", [s["eval_loss"] for s in sums]),
        ("best", [f"{s['best_metric']} {s['best_value']:.4g} at step {s['best_step']}" if s.get("best_value")
                  is not None else None for s in sums]),
    ]
    sample_keys = sorted({k for m in last for k in m if k.startswith("eval_") and k not in
                          ("eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")})
    rows += [(f"last {k}", [m.get(k) for m in last]) for k in sample_keys]
    fg = [s.get("forgetting") or {} for s in sums]
    rows += [
        ("general NLL base", [f.get("general_nll_base") for f in fg]),
        ("general NLL tuned", [f.get("general_nll_tuned") for f in fg]),
        ("general NLL change %", [f.get("nll_change_pct") for f in fg]),
        ("general answers changed", [f"{f['changed_answers']} of {f['n_prompts']}" if f.get("n_prompts") else None
                                     for f in fg]),
    ]
    return Comparison([d.name for d in dirs], [str(d) for d in dirs], differing, rows)


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def format_comparison(c: Comparison) -> str:
    """A plain-text table: the differing fields, then the metrics."""
    names = c.names
    if len(set(names)) < len(names):  # two runs/x folders: show more of the path
        names = [str(Path(d).parent.name + "/" + Path(d).name) for d in c.run_dirs]
    lines = []

    def table(title, rows):
        width = max([len(title)] + [len(k) for k, _ in rows])
        cols = [max([len(n)] + [len(_cell(v[i])) for _, v in rows]) for i, n in enumerate(names)]
        lines.append(f"{title:<{width}}  " + "  ".join(f"{n:<{w}}" for n, w in zip(names, cols)))
        for k, v in rows:
            lines.append(f"{k:<{width}}  " + "  ".join(f"{_cell(x):<{w}}" for x, w in zip(v, cols)))

    if c.differing:
        table("settings that differ", c.differing)
    else:
        lines.append("The runs' settings are identical.")
    lines.append("")
    table("results", c.metrics)
    return "\n".join(lines)
