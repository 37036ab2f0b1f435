"""Every GPU figure the project needs, in one prepared run of at most 9 minutes.

    bash scripts/gpu_check.sh                 # `make gpu-check`: on a CUDA machine
    bash scripts/gpu_check.sh --cpu-dry-run   # the CPU-capable steps, small, into a temporary folder

Steps, each a child process with its own time limit (a failure or time-out in one keeps the
others' figures), in order of importance:

1. ``env``        — GPU, driver, and the versions of torch/transformers/peft/accelerate/bitsandbytes;
2. ``cuda-tests`` — ``pytest tests/gpu`` (QLoRA on a real 4-bit CUDA base, bf16 autocast);
3. ``throughput-qwen`` — benchmarks/throughput.py at sequence length 2048 on the Qwen2.5-0.5B-shaped
   config: engine vs the docs recipe, tokens/s and peak memory (a row in docs/benchmarks.md);
4. ``throughput-llama8b`` — the same benchmark on the Llama-3-8B-shaped config;
5. ``fsdp-smoke``  — a one-GPU FSDP run through ``peft-studio launch`` (LoRA on the
   Qwen-shaped weights): finished, sharded, a gathered adapter, peak memory vs the estimate;
6. ``vram-grid``   — a first slice (every fourth configuration) of the estimator's VRAM grid
   (benchmarks/vram_accuracy.py; the GPU table of docs/estimator-accuracy.md);
7. ``fsdp-qlora-smoke`` — FSDP1 with a 4-bit base stored in bf16 (bitsandbytes' FSDP-QLoRA path).

It prints a summary table and writes docs/gpu-check.md (the table and each step's figures) and
docs/gpu-check.json; with ``$OUT`` set (or ``--out``) those files, the updated docs/benchmarks.md
and docs/estimator-accuracy.md, and the whole log are copied there too. The dry run writes only
into its ``--out`` folder (a temporary one by default) and never touches docs/.

Safe on a fresh machine: nothing is downloaded (a missing package arrives as a wheel in .whl/,
installed by scripts/gpu_check.sh), every model is built from a config.json with random weights,
and all work happens under a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUDGET_S = 500            # the steps; with the wheels' install and start-up the run stays under 9 minutes
GiB = 1 << 30


@dataclass
class Result:
    name: str
    title: str
    status: str = "not run"      # ok | failed | timeout | skipped
    seconds: float = 0.0
    summary: str = ""
    figures: dict = field(default_factory=dict)
    log_tail: str = ""


class Check:
    """Runs the steps against one deadline and collects their results."""

    def __init__(self, args):
        self.args = args
        self.dry = args.cpu_dry_run
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + args.budget
        self.log = self.work / "gpu-check.log"
        self.out = Path(args.out) if args.out else None
        self.started = time.monotonic()
        self.results: list[Result] = []
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "PEFT_STUDIO_HOME": str(self.work / "home"), "PEFT_STUDIO_CACHE": str(self.work / "cache"),
                    "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        if self.dry:
            self.env["CUDA_VISIBLE_DEVICES"] = ""
            self.env.setdefault("OMP_NUM_THREADS", "1")

    # ---- plumbing ------------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(text, flush=True)
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    def sh(self, cmd: list[str], timeout: float, name: str) -> tuple[int | None, str]:
        """Run ``cmd`` (output to the log and returned); None as the code on time-out."""
        self.say(f"$ {' '.join(cmd)}   (limit {timeout:.0f} s)")
        out_file = self.work / f"{name}.out"
        with out_file.open("w", encoding="utf-8") as fh:
            try:
                proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                code = None
        text = out_file.read_text(encoding="utf-8", errors="replace")
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(text[-20000:] + "\n")
        return code, text

    def step(self, name: str, title: str, limit: float, fn, needs_cuda: bool = False) -> Result:
        r = Result(name, title)
        self.results.append(r)
        if self.args.only and name not in self.args.only:
            r.status, r.summary = "skipped", "not selected (--only)"
            return r
        if name in self.args.skip:
            r.status, r.summary = "skipped", "--skip"
            return r
        if needs_cuda and self.dry:
            r.status, r.summary = "skipped", "needs CUDA (dry run)"
            return r
        limit = min(limit, self.remaining() - 5)
        if limit < 15:
            r.status, r.summary = "skipped", "no time left in the budget"
            return r
        self.say(f"\n=== {name}: {title} ===")
        t0 = time.monotonic()
        try:
            fn(r, limit)
            if r.status == "not run":
                r.status = "ok"
        except StepTimeout as e:
            r.status, r.summary = "timeout", str(e)
        except Exception as e:  # one step's failure must not lose the others' figures
            r.status, r.summary = "failed", f"{type(e).__name__}: {e}"[:400]
        r.seconds = round(time.monotonic() - t0, 1)
        self.say(f"--> {name}: {r.status} in {r.seconds:.0f} s  {r.summary}")
        save(self, self.started)
        return r

    def run_cmd(self, r: Result, cmd: list[str], limit: float) -> str:
        code, text = self.sh(cmd, limit, r.name)
        r.log_tail = text[-3000:]
        if code is None:
            raise StepTimeout(f"stopped after {limit:.0f} s")
        if code != 0:
            last = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
            raise RuntimeError(f"exit code {code}: {' | '.join(last)[:300]}")
        return text


class StepTimeout(Exception):
    pass


def _kill_group(proc) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except Exception:
            pass


# ---- the steps -------------------------------------------------------------------------------

def step_env(c: Check, r: Result, limit: float) -> None:
    code = ("import json, importlib, platform, torch\n"
            "v = {}\n"
            "for m in ('torch', 'transformers', 'peft', 'accelerate', 'bitsandbytes', 'datasets', 'safetensors'):\n"
            "    try:\n"
            "        v[m] = importlib.import_module(m).__version__\n"
            "    except Exception as e:\n"
            "        v[m] = 'missing (' + type(e).__name__ + ')'\n"
            "cuda = torch.cuda.is_available()\n"
            "d = {'python': platform.python_version(), 'versions': v, 'cuda': cuda,\n"
            "     'cuda_version': torch.version.cuda, 'gpus': torch.cuda.device_count() if cuda else 0}\n"
            "if cuda:\n"
            "    p = torch.cuda.get_device_properties(0)\n"
            "    d.update(gpu=p.name, gpu_bytes=p.total_memory, capability=f'{p.major}.{p.minor}',\n"
            "             bf16=torch.cuda.is_bf16_supported())\n"
            "print('ENV ' + json.dumps(d))\n")
    text = c.run_cmd(r, [sys.executable, "-c", code], limit)
    env = json.loads(next(ln for ln in text.splitlines() if ln.startswith("ENV "))[4:])
    smi = shutil.which("nvidia-smi")
    if smi and not c.dry:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        env["nvidia_smi"] = out
    r.figures = env
    if not env["cuda"] and not c.dry:
        r.status = "failed"
        r.summary = "torch sees no CUDA device: the GPU steps will fail"
    else:
        r.summary = (f"{env.get('gpu', 'no GPU')}; torch {env['versions']['torch']}, transformers "
                     f"{env['versions']['transformers']}, peft {env['versions']['peft']}, bitsandbytes "
                     f"{env['versions']['bitsandbytes']}")


def step_cuda_tests(c: Check, r: Result, limit: float) -> None:
    junit = c.work / "cuda-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/gpu",
           f"--junitxml={junit}", "-o", f"timeout={int(max(30, limit - 10))}"]
    code, text = c.sh(cmd, limit, r.name)
    r.log_tail = text[-3000:]
    if code is None:
        raise StepTimeout(f"stopped after {limit:.0f} s")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", text)}
    r.figures = counts
    r.summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or text.strip().splitlines()[-1][:200]
    if code not in (0, 5):      # 5: nothing collected
        r.status = "failed"


def _tokenizer(c: Check) -> str | None:
    """The demo model's tokenizer: carried in .whl/demo-tokenizer (scripts/gpu_wheels.sh) to a
    machine without the demo model; the tiny test model's in a dry run."""
    if c.dry:
        return str(tiny_model(c))
    carried = ROOT / ".whl" / "demo-tokenizer"
    return str(carried) if (carried / "tokenizer.json").exists() else None


def tiny_model(c: Check) -> Path:
    out = c.work / "tiny"
    if not (out / "config.json").exists():
        code = (f"from engine.testing import make_tiny_model; make_tiny_model({str(out)!r})")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=c.env, check=True, timeout=120)
    return out


def throughput(model: str, steps: int, batch: int):
    def run(c: Check, r: Result, limit: float) -> None:
        out = c.work / f"{r.name}.json"
        cmd = [sys.executable, "benchmarks/throughput.py", "--json", str(out), "--work", str(c.work / r.name)]
        if c.dry:
            cmd += ["--device", "cpu", "--model", str(tiny_model(c) / "config.json"), "--steps", "2",
                    "--batch-size", "2", "--max-length", "128", "--threads", "1", "--no-append"]
        else:
            cmd += ["--device", "cuda", "--model", model, "--max-length", "2048", "--steps", str(steps),
                    "--batch-size", str(batch)]
        tok = _tokenizer(c)
        if tok:
            cmd += ["--tokenizer", tok]
        c.run_cmd(r, cmd, limit)
        res = json.loads(out.read_text())
        b, e = res["baseline"], res["engine"]
        r.figures = {"baseline_tokens_per_s": b["tokens_per_s"], "engine_tokens_per_s": e["tokens_per_s"],
                     "speedup": e["tokens_per_s"] / b["tokens_per_s"],
                     "baseline_peak_gib": b["peak_bytes"] / GiB, "engine_peak_gib": e["peak_bytes"] / GiB,
                     "mem_ratio": e["peak_bytes"] / b["peak_bytes"],
                     "final_loss": [b["final_loss"], e["final_loss"]], "attention": e.get("attention"),
                     "loss": e.get("loss")}
        f = r.figures
        r.summary = (f"engine {f['engine_tokens_per_s']:.0f} vs baseline {f['baseline_tokens_per_s']:.0f} tokens/s "
                     f"= {f['speedup']:.2f}× (target ≥2×); peak memory {f['mem_ratio']:.2f}× (target ≤0.7×)")
    return run


def _smoke_run_file(c: Check, name: str, method: str, steps: int) -> Path:
    """A run file for a one-GPU FSDP run: LoRA/QLoRA on Qwen2.5-0.5B-shaped random weights (the
    tiny model in a dry run), 6 steps, a checkpoint at step 3."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from workload import make_records, write_jsonl

    if c.dry:
        model, length, batch = tiny_model(c), 128, 2
    else:
        model = c.work / "throughput-qwen" / "model-qwen2.5-0.5b"
        if not (model / "config.json").exists():     # the throughput step did not prepare it
            code = ("import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; "
                    "from throughput import prepare_model; "
                    f"prepare_model('benchmarks/configs/qwen2.5-0.5b.json', 'cuda', Path({str(c.work / 'throughput-qwen')!r}), "
                    f"{_tokenizer(c)!r})")
            (c.work / "throughput-qwen").mkdir(exist_ok=True)
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=c.env, check=True, timeout=180)
        length, batch = 1024, 4
    data = write_jsonl(c.work / f"{name}.jsonl", make_records(64, seed=1, hi=length))
    run = {"model": {"name_or_path": str(model)},
           "data": {"path": str(data), "max_length": length, "validation_split": 0.0},
           "method": {"name": method, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
           "train": {"max_steps": steps, "batch_size": batch, "save_steps": 3,
                     "logging_steps": 1, "distributed": {"strategy": "fsdp", "num_processes": 1}},
           "output_dir": str(c.work / name)}
    import yaml

    path = c.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run, sort_keys=False))
    return path


def fsdp_smoke(method: str, steps: int, needs_bitsandbytes: bool = False):
    def run(c: Check, r: Result, limit: float) -> None:
        if needs_bitsandbytes:
            probe = subprocess.run([sys.executable, "-c", "import bitsandbytes"], cwd=ROOT, env=c.env,
                                   capture_output=True, timeout=120)
            if probe.returncode != 0:
                r.status, r.summary = "skipped", "bitsandbytes is not installed (carry it: scripts/gpu_wheels.sh)"
                return
        run_file = _smoke_run_file(c, r.name, method, steps)
        t0 = time.monotonic()
        text = c.run_cmd(r, [sys.executable, "-m", "engine", "launch", str(run_file), "--format", "json",
                             "--no-stdin"], limit - 20)
        events = [json.loads(ln) for ln in text.splitlines() if ln.startswith('{"event"')]
        kinds = [e["event"] for e in events]
        if "finished" not in kinds:
            failed = next((e for e in events if e["event"] == "failed"), {})
            raise RuntimeError(f"no finished event; {failed.get('error', '')[:300]}")
        started = events[kinds.index("started")]
        done = [e for e in events if e["event"] == "step"]
        reserved = max((e.get("mem_reserved") or 0) for e in done)
        allocated = max((e.get("mem_allocated") or 0) for e in done)
        adapter = c.work / r.name / "adapter" / "adapter_model.safetensors"
        est = _estimate(c, run_file, limit - (time.monotonic() - t0) - 5)
        r.figures = {"distributed_type": started.get("distributed_type"), "world_size": started.get("world_size"),
                     "steps": len(done), "final_loss": done[-1]["loss"] if done else None,
                     "tokens_per_s": done[-1].get("tokens_per_s") if done else None,
                     "peak_reserved_gib": reserved / GiB, "peak_allocated_gib": allocated / GiB,
                     "adapter_saved": adapter.exists(), "wall_s": round(time.monotonic() - t0, 1), **est}
        f = r.figures
        if f["distributed_type"] != "FSDP" or not f["adapter_saved"]:
            r.status = "failed"
        err = ""
        if f.get("estimate_reserved_gib") and reserved and not c.dry:
            f["estimate_error"] = f["estimate_reserved_gib"] / f["peak_reserved_gib"] - 1
            err = f"; estimate {f['estimate_reserved_gib']:.2f} GiB ({f['estimate_error']:+.0%})"
        r.summary = (f"{f['distributed_type']} × {f['world_size']}, {f['steps']} steps, "
                     f"{(f['tokens_per_s'] or 0):.0f} tokens/s, peak reserved {f['peak_reserved_gib']:.2f} GiB"
                     f"{err}, adapter {'saved' if f['adapter_saved'] else 'MISSING'}")
    return run


def _estimate(c: Check, run_file: Path, limit: float) -> dict:
    if limit < 10:
        return {}
    try:
        proc = subprocess.run([sys.executable, "-m", "engine", "estimate", str(run_file), "--json"], cwd=ROOT,
                              env=c.env, capture_output=True, text=True, timeout=limit)
        e = json.loads(proc.stdout)
        return {"estimate_reserved_gib": e["peak_reserved"] / GiB, "estimate_device_total_gib": e["device_total"] / GiB,
                "estimate_layout": e.get("layout")}
    except Exception as exc:
        return {"estimate_error_text": f"{type(exc).__name__}: {exc}"[:200]}


def step_vram(c: Check, r: Result, limit: float) -> None:
    out = c.work / "vram-grid.json"
    cmd = [sys.executable, "benchmarks/vram_accuracy.py", "--skip-cpu", "--grid-slice", c.args.grid_slice,
           "--json", str(out)]
    if not c.dry:
        cmd.append("--write")
    text = c.run_cmd(r, cmd, limit)
    if not out.exists():
        r.summary = "no CUDA device: nothing measured" if "no CUDA" in text else "no results written"
        if not c.dry:
            r.status = "failed"
        return
    rows = json.loads(out.read_text())["rows"]
    errs = [row["error_reserved"] for row in rows if row["error_reserved"] is not None]
    within = sum(1 for e in errs if abs(e) <= 0.10)
    r.figures = {"configurations": len(rows), "measured": len(errs), "within_10pct": within,
                 "mean_abs_error": sum(abs(e) for e in errs) / len(errs) if errs else None,
                 "rows": rows}
    r.summary = (f"{len(errs)} of {len(rows)} configurations measured; {within} within ±10% (reserved); "
                 f"mean |error| {r.figures['mean_abs_error']:.1%}" if errs else f"{len(rows)} configurations, "
                 "none measured")


# ---- report ----------------------------------------------------------------------------------

def save(c: Check, started: float) -> None:
    """Write the report and copy every result file to ``--out``/$OUT. Called after each step, so
    that a run stopped from outside (the device's time limit) still leaves what it measured."""
    text = report(c, started)
    where = c.work if c.dry else DOCS
    (where / "gpu-check.md").write_text(text, encoding="utf-8")
    (where / "gpu-check.json").write_text(json.dumps([asdict(r) for r in c.results], indent=1, default=str),
                                          encoding="utf-8")
    files = [where / "gpu-check.md", where / "gpu-check.json", c.log]
    if not c.dry:
        files += [DOCS / "benchmarks.md", DOCS / "estimator-accuracy.md"]
    if c.out:
        c.out.mkdir(parents=True, exist_ok=True)
        for f in files:
            if f.exists():
                shutil.copy2(f, c.out / f.name)




def table(results: list[Result]) -> str:
    lines = ["| step | what | status | time | result |", "|---|---|---|---:|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.title} | {r.status} | {r.seconds:.0f} s | {r.summary.replace('|', '/')} |")
    return "\n".join(lines)


def report(c: Check, started: float) -> str:
    env = next((r.figures for r in c.results if r.name == "env"), {})
    head = [f"# GPU check{' (CPU dry run)' if c.dry else ''}", "",
            f"Run {dt.datetime.now().isoformat(timespec='seconds')} with `bash scripts/gpu_check.sh"
            f"{' --cpu-dry-run' if c.dry else ''}` in {time.monotonic() - started:.0f} s "
            f"(budget {c.args.budget} s).",
            f"Device: {env.get('gpu', 'none')} ({(env.get('gpu_bytes') or 0) / GiB:.0f} GiB), CUDA "
            f"{env.get('cuda_version')}, Python {env.get('python')}; "
            + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()) + ".", "",
            table(c.results), ""]
    for r in c.results:
        if r.figures and r.name != "env":
            figs = {k: v for k, v in r.figures.items() if k != "rows"}
            head += [f"## {r.name}", "", "```json", json.dumps(figs, indent=1, default=str), "```", ""]
    grid = next((r.figures.get("rows") for r in c.results if r.name == "vram-grid" and r.figures), None)
    if grid:
        head += ["## VRAM grid slice (also in docs/estimator-accuracy.md)", "",
                 "| configuration | est. reserved GiB | measured reserved GiB | error |", "|---|---:|---:|---:|"]
        for row in grid:
            est, meas, err = row["est_reserved"], row["measured_reserved"], row["error_reserved"]
            head.append(f"| {row['configuration']} | {'–' if est is None else f'{est / GiB:.2f}'} | "
                        f"{'–' if meas is None else f'{meas / GiB:.2f}'} | {'–' if err is None else f'{err:+.1%}'} |")
        head.append("")
    return "\n".join(head)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-dry-run", action="store_true", help="run the CPU-capable steps, small, into --out")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="also copy the results here (default: $OUT)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--budget", type=int, default=BUDGET_S, help="seconds for the whole check")
    ap.add_argument("--only", nargs="*", default=[], help="run only these steps")
    ap.add_argument("--skip", nargs="*", default=[], help="skip these steps")
    ap.add_argument("--grid-slice", default="::4", help="which VRAM grid configurations (vram_accuracy.py)")
    args = ap.parse_args(argv)
    if args.cpu_dry_run and not args.out:
        args.out = tempfile.mkdtemp(prefix="gpu-check-dry-")
    c = Check(args)
    started = c.started
    c.say(f"GPU check: work folder {c.work}, budget {args.budget} s" + (" (CPU dry run)" if c.dry else ""))
    c.step("env", "GPU, driver and package versions", 60, lambda r, lim: step_env(c, r, lim))
    c.step("cuda-tests", "pytest tests/gpu", 120, lambda r, lim: step_cuda_tests(c, r, lim))
    c.step("throughput-qwen", "throughput at 2048 tokens, Qwen2.5-0.5B shape", 110,
           lambda r, lim: throughput("benchmarks/configs/qwen2.5-0.5b.json", 16, 8)(c, r, lim))
    c.step("throughput-llama8b", "throughput at 2048 tokens, Llama-3-8B shape", 190,
           lambda r, lim: throughput("benchmarks/configs/llama-3-8b.json", 8, 4)(c, r, lim), needs_cuda=True)
    c.step("fsdp-smoke", "one-GPU FSDP run (LoRA) via peft-studio launch", 100,
           lambda r, lim: fsdp_smoke("lora", 6)(c, r, lim))
    c.step("vram-grid", f"estimator VRAM grid, slice {args.grid_slice}", 110, lambda r, lim: step_vram(c, r, lim),
           needs_cuda=False)
    c.step("fsdp-qlora-smoke", "one-GPU FSDP1 run with a 4-bit base (QLoRA)", 80,
           lambda r, lim: fsdp_smoke("qlora", 4, needs_bitsandbytes=True)(c, r, lim),
           needs_cuda=True)
    save(c, started)
    c.say("\n" + table(c.results))
    if c.out:
        c.say(f"results copied to {c.out}")
    failed = [r.name for r in c.results if r.status in ("failed", "timeout")]
    c.say(f"done in {time.monotonic() - started:.0f} s; " + (f"failed: {', '.join(failed)}" if failed else "no failures"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
