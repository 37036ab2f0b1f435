"""Throughput and memory: the recipe from the peft/transformers docs vs PEFT Studio's engine.

    python benchmarks/throughput.py --device cpu --model demo --steps 20 --batch-size 8

Two arms, each in its own child process (so each has its own memory high-water mark), with the
same model, data, LoRA (r/alpha/dropout of the engine's defaults on q,k,v,o), seed, optimizer
and number of optimizer steps:

* baseline — what a person writes from the docs: tokenize with the chat template (prompt labels
  -100), ``Trainer`` + ``peft.get_peft_model``, ``DataCollatorForSeq2Seq`` padding each batch to
  its longest example, the Trainer's random sampler, the model's own loss.
* engine — ``engine.training.train`` with its defaults (packing, per-example attention, chunked
  loss on labelled positions, ...); ``--engine-set train.packing=false`` etc. for ablations.

Both draw the same examples in the same order (the Trainer's seeded random sampler over the same
list), so the step losses are comparable one by one. Reported: non-padding tokens/s (tokens the
model had to process; padding excluded), loss-bearing tokens/s, wall time of the training loop
(first step start → last step logged), peak memory (RSS high-water on the CPU, max allocated on
CUDA), final loss (mean of the last quarter of steps) and the ratios. A row goes to
docs/benchmarks.md unless --no-append.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import make_records, percentiles, write_jsonl  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
DOC = ROOT / "docs" / "benchmarks.md"
TABLE_MARK = "<!-- throughput rows are appended below by benchmarks/throughput.py -->"


# ---- shared set-up --------------------------------------------------------------------------

def lora_defaults() -> dict:
    from engine.methods import params_class as method_params_class

    p = method_params_class("lora")()
    return {"r": p.r, "alpha": p.alpha, "dropout": p.dropout}


def train_defaults() -> dict:
    from engine.config import TrainConfig

    t = TrainConfig()
    return {"lr": t.lr, "seed": t.seed, "max_grad_norm": t.max_grad_norm, "weight_decay": t.weight_decay,
            "scheduler": t.scheduler}


def prepare_model(spec: str, device: str, work: Path, tokenizer: str | None = None) -> Path:
    """`demo` → the bundled SmolLM2-135M folder; a config.json → random weights of that shape
    (speed does not depend on the values), saved once with the demo tokenizer (or ``tokenizer``,
    a folder with the demo's tokenizer files: what a machine without the demo model carries)."""
    if spec == "demo" or tokenizer is None:
        from engine.models import demo_model_dir

        demo = demo_model_dir()
    else:
        demo = Path(tokenizer)
    if spec == "demo":
        return demo
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(spec)
    out = work / f"model-{Path(spec).stem}"
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(demo)
    if cfg.vocab_size < len(tok):
        raise SystemExit(f"{spec}: vocab_size {cfg.vocab_size} is smaller than the demo tokenizer's {len(tok)}")
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device("cuda" if device == "cuda" else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


# ---- the arms (each runs in a child process) ------------------------------------------------

class _Timer:
    """First-step start → last step logged, and the per-step losses (same hooks for both arms)."""

    def __init__(self):
        self.t0 = self.t_last = None
        self.cpu0 = self.cpu_last = None  # process CPU seconds: less sensitive to a busy machine
        self.losses: list[float] = []

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class Cb(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                timer.t0, timer.cpu0 = time.time(), time.process_time()

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    timer.losses.append(float(logs["loss"]))
                    timer.t_last, timer.cpu_last = time.time(), time.process_time()

        return Cb()


def _peak_memory(device: str) -> int:
    import resource

    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def run_baseline(a, model_dir: Path, data: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    records = [json.loads(line) for line in data.read_text().splitlines()]

    def tokenize(r):
        prompt = tok.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=True)["input_ids"]
        full = tok.apply_chat_template(r["messages"], tokenize=True)["input_ids"][: a.max_length]
        labels = ([-100] * len(prompt) + full[len(prompt):])[: a.max_length]
        # Train the answer through its end-of-turn token, not the template's newline after it:
        # the engine's labels, so that both arms optimise the same objective.
        while labels and labels[-1] != -100 and not tok.decode([labels[-1]]).strip():
            labels[-1] = -100
        return {"input_ids": full, "attention_mask": [1] * len(full), "labels": labels}

    ds = Dataset.from_list([tokenize(r) for r in records])
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if a.device == "cuda":
        model.to("cuda")
    lo, tr = lora_defaults(), train_defaults()
    model = get_peft_model(model, LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    counts = {"tokens": 0, "trained": 0}

    class CountingTrainer(Trainer):
        """Instrumentation only: counts the tokens of the batches actually trained on (the data
        loader prefetches one batch ahead, so counting in the collator would over-count)."""

        def training_step(self, model, inputs, *args, **kwargs):
            counts["tokens"] += int(inputs["attention_mask"].sum())
            counts["trained"] += int((inputs["labels"] != -100).sum())
            return super().training_step(model, inputs, *args, **kwargs)

    timer = _Timer()
    args = TrainingArguments(
        output_dir=str(Path(a.work) / "baseline-out"), per_device_train_batch_size=a.batch_size,
        max_steps=a.steps, learning_rate=tr["lr"], lr_scheduler_type=tr["scheduler"], seed=tr["seed"],
        data_seed=tr["seed"],  # the engine sets it too: both arms then draw the same batches
        weight_decay=tr["weight_decay"], max_grad_norm=tr["max_grad_norm"], optim="adamw_torch",
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        bf16=a.device == "cuda", use_cpu=a.device == "cpu")
    collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    trainer = CountingTrainer(model=model, args=args, train_dataset=ds, data_collator=collate,
                      callbacks=[timer.callback()])
    trainer.train()
    return _result(a, timer, counts, {"attention": model.config._attn_implementation, "loss": "model"})


def run_engine(a, model_dir: Path, data: Path) -> dict:
    from engine.config import RunConfig
    from engine.events import ListSink
    from engine.training import train

    lo, tr = lora_defaults(), train_defaults()
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "validation_split": 0.0, "max_length": a.max_length},
        "method": {"name": "lora", **lo, "target_modules": TARGETS},
        "train": {"max_steps": a.steps, "batch_size": a.batch_size, "lr": tr["lr"], "seed": tr["seed"],
                  "logging_steps": 1},
        "output_dir": str(Path(a.work) / "engine-run"),
    }).with_overrides(a.engine_set)
    class CpuSink(ListSink):
        """Events are emitted in the training thread: stamp each with the process CPU time."""

        def emit(self, event):
            super().emit({**event, "cpu": time.process_time()})

    sink = CpuSink()
    res = train(cfg, sinks=[sink])
    if res.status != "finished":
        raise SystemExit(f"engine run {res.status}: {res.error}")
    started, steps = sink.of("started")[0], sink.of("step")
    timer = _Timer()
    timer.t0, timer.t_last = started["time"], steps[-1]["time"]
    timer.cpu0, timer.cpu_last = started["cpu"], steps[-1]["cpu"]
    timer.losses = [s["loss"] for s in steps if s.get("loss") is not None]
    counts = {"tokens": steps[-1]["tokens"], "trained": steps[-1]["trained_tokens"]}
    logs = [e["message"] for e in sink.of("log")]
    pick = {k: next((m.split(": ", 1)[1] for m in logs if m.startswith(k.capitalize() + ":")), "?")
            for k in ("attention", "loss")}
    return _result(a, timer, counts, {**pick, "overrides": a.engine_set})


def _result(a, timer: _Timer, counts: dict, info: dict) -> dict:
    secs = timer.t_last - timer.t0
    tail = timer.losses[-max(1, len(timer.losses) // 4):]
    return {"arm": a.arm, "train_s": secs, "cpu_s": timer.cpu_last - timer.cpu0, "tokens": counts["tokens"], "trained_tokens": counts["trained"],
            "tokens_per_s": counts["tokens"] / secs, "trained_per_s": counts["trained"] / secs,
            "peak_bytes": _peak_memory(a.device),
            "losses": timer.losses, "final_loss": sum(tail) / len(tail), **info}


# ---- the parent -----------------------------------------------------------------------------

def machine() -> tuple[str, str]:
    from engine.sysinfo import cpu_name

    return cpu_name(), f"{os.cpu_count()} cores"


def device_name(device: str, threads: int) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"CPU, {threads} threads"


def run_child(a, arm: str, model_dir: Path, data: Path) -> dict:
    out = Path(a.work) / f"{arm}.json"
    cmd = [sys.executable, __file__, "--arm", arm, "--result", str(out), "--work", a.work,
           "--model-dir", str(model_dir), "--data", str(data), "--device", a.device, "--steps", str(a.steps),
           "--batch-size", str(a.batch_size), "--max-length", str(a.max_length)]
    for item in a.engine_set:
        cmd += ["--engine-set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           # keep benchmark runs out of the user's run index
           "PEFT_STUDIO_HOME": str(Path(a.work) / "home")}
    if a.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    print(f"[{arm}] running …", flush=True)
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())


def compare(b: dict, e: dict) -> dict:
    n = min(len(b["losses"]), len(e["losses"]))
    rel = [abs(x - y) / max(abs(x), 1e-9) for x, y in zip(b["losses"][:n], e["losses"][:n])]
    return {"speedup": e["tokens_per_s"] / b["tokens_per_s"],
            "trained_speedup": e["trained_per_s"] / b["trained_per_s"],
            "mem_ratio": e["peak_bytes"] / b["peak_bytes"],
            "loss_diff": (e["final_loss"] - b["final_loss"]) / b["final_loss"],
            "step_loss_rel_diff_mean": sum(rel) / max(1, n), "same_tokens": b["tokens"] == e["tokens"],
            # tokens per CPU-second: a cross-check when other processes share the cores
            "cpu_speedup": (e["tokens"] / e["cpu_s"]) / (b["tokens"] / b["cpu_s"])
            if b.get("cpu_s") and e.get("cpu_s") else float("nan")}


def report(a, b: dict, e: dict, c: dict, lens: list[int]) -> str:
    gib = 2 ** 30
    lines = [
        f"workload: {len(lens)} examples, tokens p0/p50/p90/p99/p100 = "
        + ("/".join(str(v) for v in percentiles(lens).values()) if lens else "?"),
        f"{'':26}{'baseline':>14}{'engine':>14}{'ratio':>10}",
        f"{'non-padding tokens/s':26}{b['tokens_per_s']:14.1f}{e['tokens_per_s']:14.1f}{c['speedup']:10.2f}",
        f"{'loss-bearing tokens/s':26}{b['trained_per_s']:14.1f}{e['trained_per_s']:14.1f}"
        f"{c['trained_speedup']:10.2f}",
        f"{'peak memory (GiB)':26}{b['peak_bytes'] / gib:14.2f}{e['peak_bytes'] / gib:14.2f}{c['mem_ratio']:10.2f}",
        f"{'training wall time (s)':26}{b['train_s']:14.1f}{e['train_s']:14.1f}"
        f"{e['train_s'] / b['train_s']:10.2f}",
        f"{'CPU seconds (process)':26}{b.get('cpu_s', float('nan')):14.1f}{e.get('cpu_s', float('nan')):14.1f}"
        f"{c['cpu_speedup']:10.2f}  (tokens per CPU-second, ratio)",
        f"{'final loss (last 25%)':26}{b['final_loss']:14.4f}{e['final_loss']:14.4f}{c['loss_diff']:+10.2%}",
        f"{'tokens processed':26}{b['tokens']:14d}{e['tokens']:14d}",
        f"step losses differ by {c['step_loss_rel_diff_mean']:.2%} on average; same tokens: {c['same_tokens']}",
        f"engine: attention {e['attention']}; {e['loss']}",
    ]
    return "\n".join(lines)


def append_row(a, b: dict, e: dict, c: dict, load: tuple[float, float]) -> None:
    cpu, cores = machine()
    header = ("| date | machine | device | model | steps × batch, max_len | baseline tok/s | engine tok/s "
              "| speed-up | per CPU-second | peak mem baseline → engine | mem ratio | final loss baseline / engine | "
              "load avg (start → end) | engine options |\n" + "|---" * 14 + "|\n")
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if TABLE_MARK not in text:
        text = text.rstrip("\n") + f"\n\n## Throughput log\n\n{TABLE_MARK}\n\n{header}"
    gib = 2 ** 30
    cpu = "n/a" if c["cpu_speedup"] != c["cpu_speedup"] else f"{c['cpu_speedup']:.2f}×"  # NaN: not measured
    row = (f"| {dt.date.today().isoformat()} | {cpu}, {cores} | {device_name(a.device, a.threads)} | {a.model} "
           f"| {a.steps} × {a.batch_size}, {a.max_length} | {b['tokens_per_s']:.1f} | {e['tokens_per_s']:.1f} "
           f"| **{c['speedup']:.2f}×** | {cpu} | {b['peak_bytes'] / gib:.2f} → {e['peak_bytes'] / gib:.2f} GiB "
           f"| {c['mem_ratio']:.2f} | {b['final_loss']:.4f} / {e['final_loss']:.4f} ({c['loss_diff']:+.1%}) "
           f"| {load[0]:.1f} → {load[1]:.1f} | {' '.join(a.engine_set) or 'defaults'} |\n")
    if not text.endswith("\n"):
        text += "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text + row, encoding="utf-8")
    print(f"appended a row to {DOC}")


def finish(a, res: dict, lens: list[int], load: tuple[float, float]) -> None:
    if "baseline" in res and "engine" in res:
        c = compare(res["baseline"], res["engine"])
        print(report(a, res["baseline"], res["engine"], c, lens))
        print(f"load average (1 min) at start {load[0]:.1f}, at end {load[1]:.1f} on {os.cpu_count()} cores")
        if not a.no_append:
            append_row(a, res["baseline"], res["engine"], c, load)
    else:
        for r in res.values():
            print(json.dumps({k: v for k, v in r.items() if k != "losses"}, indent=1))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", default="demo", help="`demo` or a config.json (random weights of that shape)")
    p.add_argument("--tokenizer", default=None, help="with a config.json: a folder holding the demo model's "
                   "tokenizer files (default: the demo model's own)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--examples", type=int, default=0, help="data set size (default: steps × batch × 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--arms", default="baseline,engine")
    p.add_argument("--engine-set", action="append", default=[], metavar="KEY=VALUE",
                   help="run-file override for the engine arm, e.g. train.packing=false (repeatable)")
    p.add_argument("--no-append", action="store_true", help="do not add a row to docs/benchmarks.md")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write both results to this file")
    p.add_argument("--from-json", default=None, help="report (and append) results saved with --json "
                   "instead of running; the other options must match that run")
    # child-process arguments
    p.add_argument("--arm", choices=["baseline", "engine"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    if a.arm:  # child
        fn = run_baseline if a.arm == "baseline" else run_engine
        res = fn(a, Path(a.model_dir), Path(a.data))
        Path(a.result).write_text(json.dumps(res))
        return 0
    if a.from_json:
        saved = json.loads(Path(a.from_json).read_text())
        finish(a, saved, saved.get("lengths", []), tuple(saved.get("load", (float("nan"),) * 2)))
        return 0
    work = Path(a.work or tempfile.mkdtemp(prefix="peft-bench-"))
    a.work = str(work)
    from transformers import AutoTokenizer

    model_dir = prepare_model(a.model, a.device, work, a.tokenizer)
    n = a.examples or a.steps * a.batch_size * 2
    tok = AutoTokenizer.from_pretrained(model_dir)
    # Keep only examples that fit max_length, so that neither arm truncates (the engine drops an
    # example whose answer is cut off entirely; the recipe would train on its prompt for nothing).
    records, lens = [], []
    for r in make_records(n * 2, seed=0, hi=a.max_length):
        k = len(tok.apply_chat_template(r["messages"], tokenize=True)["input_ids"])
        if k <= a.max_length and len(records) < n:
            records.append(r)
            lens.append(k)
    data = write_jsonl(work / "train.jsonl", records)
    load0 = os.getloadavg()
    res = {arm: run_child(a, arm, model_dir, data) for arm in a.arms.split(",")}
    load1 = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps({**res, "load": [load0[0], load1[0]], "lengths": lens}, indent=1))
    finish(a, res, lens, (load0[0], load1[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
