"""`peft-studio estimate run.yaml [--gpu 24GB] [--json]`: the memory estimate, headless.

``run.yaml`` may hold only ``model: {name_or_path: ...}``; everything else takes its default.
A model folder or a config.json path works in its place too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

JSON_KEYS = ("components", "peak_allocated", "peak_reserved", "device_total", "total_params",
             "trainable_params", "adapter_bytes", "verdict")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "estimate", help="predict peak GPU memory by component (no weights needed)",
        description="Predict the peak GPU memory of a run from its run file and the model's "
                    "config.json, by component, and say whether it fits a GPU.")
    p.add_argument("run_file", help="run.yaml (may name only model.name_or_path), a model folder, "
                                    "or a config.json")
    p.add_argument("--gpu", default=None, help="GPU to judge against: a size (8GB … 141GB) or a name "
                                               "(RTX 4090, A100-80GB, H100…), or `cpu` (this machine's "
                                               "RAM); default: this machine's GPU, else its CPU")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run-file field, e.g. --set train.batch_size=8")
    p.add_argument("--time", action="store_true",
                   help="also time a few real steps of the run's own data on this machine and "
                        "extrapolate to the whole run")
    p.add_argument("--time-only", action="store_true",
                   help="only the time measurement (what the studio's Measure button runs)")
    p.set_defaults(func=run)


def load_run(path: str, overrides: list[str] | None = None):
    from engine.config import ConfigError, RunConfig

    p = Path(path)
    if p.is_dir() or p.name == "config.json" or p.suffix == ".json":
        if not p.exists():
            raise ConfigError("", f"{p} does not exist")
        cfg = RunConfig.from_dict({"model": {"name_or_path": str(p)}})
    else:
        cfg = RunConfig.load(p)
    return cfg.with_overrides(overrides) if overrides else cfg


def gib(n: float | None) -> str:
    return "-" if n is None else f"{n / (1 << 30):.2f} GiB"


def format_table(est) -> str:
    from engine.estimate.memory import LABELS

    lines = []
    head = f"{est.total_params:,} parameters, {est.trainable_params:,} trainable " \
           f"({100 * est.trainable_params / max(est.total_params, 1):.3f}%), adapter {gib(est.adapter_bytes)}"
    lines.append(head)
    lines.append(f"batch {est.batch_size} × {est.seq_len} tokens, weights in {est.quantization or est.dtype}")
    if getattr(est, "processes", 1) > 1:
        lines.append(f"per GPU: {est.layout} over {est.processes} processes")
    lines.append("")
    width = max(len(v) for v in LABELS.values())
    for key, label in LABELS.items():
        live = est.components.get(key, 0)
        size = est.sizes.get(key)
        extra = f"   (not live at the peak; {gib(size)} at most)" if not live and size else ""
        lines.append(f"  {label:<{width}}  {gib(live):>12}{extra}")
    lines.append(f"  {'':-<{width}}  {'':->12}")
    lines.append(f"  {'Peak allocated':<{width}}  {gib(est.peak_allocated):>12}")
    lines.append(f"  {'Peak reserved':<{width}}  {gib(est.peak_reserved):>12}")
    lines.append(f"  {'Device total':<{width}}  {gib(est.device_total):>12}")
    lines.append("")
    if est.gpu_name:
        where = ("(no GPU: the run trains on the CPU; --gpu 24GB or a name plans for a GPU)"
                 if getattr(est, "on_cpu", False) else f"({gib(est.gpu_bytes)})")
        lines.append(f"{est.verdict.upper()} on {est.gpu_name} {where}")
        mb = est.max_batch_size
        ms = est.max_seq_len
        lines.append(f"  largest batch at this length: {mb if mb else 'none'}; "
                     f"longest sequence at this batch: {ms if ms else 'none'}")
    else:
        lines.append("No GPU given or found: pass --gpu 24GB (or a name) for a verdict.")
    for s in est.suggestions:
        lines.append(f"  - {s}")
    a = getattr(est, "assumptions", None) or {}
    if a:
        lines.append("")
        lines.append("Assumed (as the run will train):")
        traced = f" (activations traced with {a['attention_traced']})" \
            if a.get("attention_traced") not in (None, a["attention"]) else ""
        lines.append(f"  attention kernel: {a['attention']}{traced}")
        lines.append(f"  loss: {a['loss']}")
        lines.append(f"  packing: {'on' if a['packing'] else 'off'}; gradient checkpointing: "
                     f"{'on' if a['gradient_checkpointing'] else 'off'}; autocast: {a['autocast'] or 'none'}")
        for what, dtype in a.get("dtypes", {}).items():
            lines.append(f"  {what}: {dtype}")
    for n in est.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def format_time(t: dict) -> str:
    """The time probe's result for a person: per step, the run, and what it rests on."""
    from engine.estimate.timing import human_duration as dur

    lines = [f"time on {t['device']} ({t['weights']} weights, attention {t['attention']}): "
             f"{t['step_s']:.2f} s a step, {t['tokens_per_s']:.0f} tokens/s"]
    lines.append(f"  the run: {t['total_steps']} steps, {t['tokens']:,} tokens"
                 + (f" ({t['padding_fraction']:.0%} padding)" if t["padding_fraction"] > 0.005 else "")
                 + f" → training {dur(t['train_s'])}"
                 + (f", {t['evaluations']} evaluation{'s' if t['evaluations'] > 1 else ''} {dur(t['eval_s'])}"
                    if t["evaluations"] else "")
                 + f", start-up {dur(t['startup_s'])}; about {dur(t['total_s'])} in all")
    if t["from_data"]:
        lines.append(f"  from the token lengths of {t['measured_examples']:,} of {t['examples']:,} training "
                     f"examples; timed {t['steps_timed']} of the run's micro-batches "
                     f"({', '.join(str(x['tokens']) for x in t['timed'])} tokens)")
    else:
        lines.append("  no data could be read: every step assumed full (batch × max_length tokens), so this "
                     "is an upper bound")
    return "\n".join(lines)


def run(args) -> int:
    from engine.estimate.memory import estimate

    cfg = load_run(args.run_file, args.set)
    want_time = getattr(args, "time", False) or getattr(args, "time_only", False)
    out: dict = {}
    est = None
    if not getattr(args, "time_only", False):
        est = estimate(cfg, args.gpu)
        out = est.to_dict()
    if want_time:
        import psutil

        from engine import wire
        from engine.estimate.timing import probe_time

        # Progress on stderr, one wire message a line (engine/wire.py): the studio shows it while
        # the probe runs.
        out["time"] = probe_time(cfg, progress=lambda msg: wire.write(sys.stderr, wire.progress(msg)),
                                 process_start=psutil.Process().create_time())
    if args.json:
        ordered = {k: out[k] for k in JSON_KEYS if k in out}
        ordered.update({k: v for k, v in out.items() if k not in ordered})
        json.dump(ordered, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        if est is not None:
            print(format_table(est))
        if "time" in out:
            print(format_time(out["time"]))
    return 0
