"""How right is the time estimate? The probe's prediction beside the real run, config by config.

    python benchmarks/time_accuracy.py --model demo --steps 10

For each configuration the script runs, one after the other (never side by side, so neither
slows the other):

1. ``python -m engine estimate run.yaml --time-only --json`` — the studio's "Measure time";
2. ``python -m engine train run.yaml`` — the run itself, headless.

On a machine without a GPU it also compares the memory estimate for this machine's CPU and RAM
(``peft-studio estimate run.yaml --gpu cpu``) with the run's peak RSS (``wait4``'s rusage).

It compares the predicted training time of the run's steps with the run's own (its events:
``started`` to the last ``step``), and the predicted total (start-up, training, evaluation) with
the run's wall time from process start to exit. The data is benchmarks/workload.py's long-tailed
instruction set (median ≈ 170 tokens), so packing, padding and length grouping all matter.
Prints a Markdown table; ``--append FILE`` adds it to FILE (docs/estimator-accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB = 1 << 30
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import make_records, write_jsonl  # noqa: E402

# (label, run-file overrides): the engine's defaults and the levers that change a step's tokens.
CONFIGS = [
    ("packed, batch 4, max_len 1024", {"train.batch_size": 4, "data.max_length": 1024}),
    ("padded, batch 4, max_len 512", {"train.packing": False, "train.group_by_length": False,
                                      "train.batch_size": 4, "data.max_length": 512}),
    ("padded + length-grouped, batch 8", {"train.packing": False, "train.batch_size": 8, "data.max_length": 512}),
    ("packed, batch 8, grad. checkpointing", {"train.batch_size": 8, "data.max_length": 512,
                                              "train.gradient_checkpointing": True}),
    ("prompt tuning (20 virtual), batch 4", {"method.name": "prompt_tuning", "method.num_virtual_tokens": 20,
                                             "train.batch_size": 4, "data.max_length": 512}),
]


def run_file(work: Path, i: int, model: str, steps: int, overrides: dict) -> tuple[Path, Path]:
    from engine.config import RunConfig

    run_dir = work / f"run-{i}"
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": model},
        "data": {"path": str(work / "train.jsonl"), "validation_split": 0.05},
        "method": {"name": "lora", "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "train": {"max_steps": steps, "logging_steps": 1},
        "output_dir": str(run_dir),
    }).with_overrides([f"{k}={v}" for k, v in overrides.items()])
    path = work / f"run-{i}.yaml"
    cfg.save(path)
    return path, run_dir


def env_for(home: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PEFT_STUDIO_HOME"] = str(home)      # a private run index
    return env


def predict(path: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "engine", "estimate", str(path), "--time-only", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the probe failed for {path}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)["time"]


def measure(path: Path, run_dir: Path, env: dict) -> dict:
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(path), "--no-stdin"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)        # this child's own rusage: its peak RSS
    proc.returncode = 0
    wall = time.time() - t0
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    if not any(e["event"] == "finished" for e in events):
        raise SystemExit(f"the run in {run_dir} did not finish; see {run_dir / 'engine.log'}")
    started = next(e for e in events if e["event"] == "started")
    last = [e for e in events if e["event"] == "step"][-1]
    return {"train_s": last["time"] - started["time"], "wall_s": wall, "steps": last["step"],
            "tokens": last["tokens"], "peak_rss": usage.ru_maxrss * 1024}


def memory_estimate(path: Path, pred: dict) -> int | None:
    """The memory estimate for this machine (peak RSS on the CPU) at the run's largest
    micro-batch — the estimate's own figure is for the largest possible one (batch ×
    max_length), which a short run of real data need not meet. None on a GPU machine, whose
    memory benchmarks/vram_accuracy.py checks."""
    import torch

    from engine.config import RunConfig
    from engine.estimate.memory import estimate

    if torch.cuda.is_available():
        return None
    cfg = RunConfig.load(path)
    largest = pred["largest_micro_batch"]
    if pred["packed"]:        # one row of `largest` tokens
        cfg.train.batch_size, cfg.data.max_length = 1, largest
    else:                     # batch × the widest batch's width (virtual tokens are added by the estimate)
        width = largest // cfg.train.batch_size - (pred.get("virtual_tokens") or 0)
        cfg.data.max_length = max(8, width)
    return estimate(cfg, "cpu").device_total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo", help="`demo` or a model folder")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps of each run")
    p.add_argument("--examples", type=int, default=400, help="examples in the generated data set")
    p.add_argument("--only", default="", help="comma-separated config numbers (1-based) to run")
    p.add_argument("--append", default=None, metavar="FILE", help="append the table to this Markdown file")
    p.add_argument("--json", default=None, metavar="FILE", help="also keep the raw figures here")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="print the table of an earlier --json run again, with the current memory estimate")
    p.add_argument("--work", default=None)
    a = p.parse_args(argv)
    if a.from_json:
        raw = json.loads(Path(a.from_json).read_text(encoding="utf-8"))
        rows = [row(r["config"], Path(r["run_file"]), r["predicted"], r["measured"]) for r in raw]
        return report(rows, a)
    work = Path(a.work or tempfile.mkdtemp(prefix="peft-time-"))
    write_jsonl(work / "train.jsonl", make_records(a.examples, seed=0, hi=1024))
    env = env_for(work / "home")
    chosen = [int(x) for x in a.only.split(",") if x] or list(range(1, len(CONFIGS) + 1))
    rows, raw = [], []
    for i in chosen:
        label, overrides = CONFIGS[i - 1]
        path, run_dir = run_file(work, i, a.model, a.steps, overrides)
        pred = predict(path, env)
        real = measure(path, run_dir, env)
        rows.append(row(label, path, pred, real))
        raw.append({"config": label, "run_file": str(path), "predicted": pred, "measured": real})
        print(rows[-1], flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return report(rows, a)


def row(label: str, path: Path, pred: dict, real: dict) -> str:
    err_train = pred["train_s"] / real["train_s"] - 1
    err_total = pred["total_s"] / real["wall_s"] - 1
    mem = memory_estimate(path, pred)
    mem_cell = (f"{mem / GiB:.2f} / {real['peak_rss'] / GiB:.2f} GiB | {mem / real['peak_rss'] - 1:+.0%}"
                if mem else "n/a | ")
    return (f"| {label} | {pred['step_s']:.2f} | {real['train_s'] / real['steps']:.2f} | "
            f"{pred['train_s']:.0f} / {real['train_s']:.0f} s | {err_train:+.0%} | "
            f"{pred['total_s']:.0f} / {real['wall_s']:.0f} s | {err_total:+.0%} | "
            f"{pred['real_tokens'] / pred['total_steps']:.0f} / {real['tokens'] / real['steps']:.0f} | "
            f"{mem_cell} |")


def report(rows: list[str], a) -> int:
    from engine.sysinfo import cpu_name

    head = (f"\n### {time.strftime('%Y-%m-%d')}: {cpu_name()}, {os.cpu_count()} cores, model {a.model}, "
            f"{a.steps} steps a run, {a.examples} generated examples\n\n"
            "| config | predicted s/step | measured s/step | training predicted / measured | error | "
            "whole run predicted / measured | error | data tokens a step predicted / measured | "
            "peak RAM estimated / measured (RSS) | error |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    table = head + "\n".join(rows) + "\n"
    print(table)
    if a.append:
        with open(a.append, "a", encoding="utf-8") as fh:
            fh.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
