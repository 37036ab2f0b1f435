"""Does watching a run from the studio slow it down? Tokens/s through the studio's supervisor vs
the same run headless.

    QT_QPA_PLATFORM=offscreen python benchmarks/studio_overhead.py --model demo --steps 8 --repeats 2

* headless: ``python -m engine train run.yaml`` with its stdout going nowhere, as from a shell
  script or a scheduler;
* studio: ``studio.supervisor.RunSupervisor`` starts the very same child (its command, its
  environment), reads the JSON events in its QThread and delivers them as Qt signals to a slot in
  the UI thread, which here keeps the series the monitor would plot.

Both read tokens/s the same way, from the run's own events.jsonl: non-padding tokens trained
between the ``started`` event and the last ``step`` event, divided by the time between them.
Runs alternate (headless, studio, headless, …) so slow drifts in machine load hit both arms; the
ratio of the medians is printed (target ≥ 0.97).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import make_records, write_jsonl  # noqa: E402


def rate_from_events(run_dir: Path) -> float:
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    kinds = {e["event"] for e in events}
    if "finished" not in kinds:
        failed = [e for e in events if e["event"] == "failed"]
        raise SystemExit(f"run {run_dir} did not finish: {failed[-1] if failed else kinds}")
    started = [e for e in events if e["event"] == "started"][-1]
    last = [e for e in events if e["event"] == "step"][-1]
    return last["tokens"] / (last["time"] - started["time"])


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: both arms wait for theirs
    return ru.ru_utime + ru.ru_stime


def child_env(home: Path, threads: int | None) -> dict:
    # What studio.supervisor.child_env sets, plus a private run index for the benchmark.
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PEFT_STUDIO_HOME"] = str(home)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_headless(run_yaml: Path, run_dir: Path, env: dict) -> float:
    subprocess.run([sys.executable, "-m", "engine", "train", str(run_yaml), "--no-stdin"], cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return rate_from_events(run_dir)


def run_pipe(run_yaml: Path, run_dir: Path, env: dict) -> float:
    """Diagnostic arm: the child exactly as the supervisor starts it (stdin and stdout pipes,
    stderr to engine.log, its own session), read by a plain thread: no Qt at all."""
    import threading

    with open(run_dir.parent / f"{run_dir.name}.log", "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(run_yaml)], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0,
                                start_new_session=True)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
    reader.start()
    proc.wait()
    reader.join()
    return rate_from_events(run_dir)


def run_studio(run_yaml: Path, run_dir: Path, env: dict, timeout_s: float) -> float:
    from PySide6.QtCore import QCoreApplication, QTimer

    from studio.supervisor import RunSupervisor

    app = QCoreApplication.instance() or QCoreApplication([])
    sup = RunSupervisor()
    series: dict[str, list] = {"loss": [], "tokens_per_s": []}
    done: list = []

    def on_event(ev):  # what the monitor does with each step: append to its series
        if ev.get("event") == "step":
            for k in series:
                series[k].append(ev.get(k))

    sup.sig_event.connect(on_event)
    sup.sig_finished.connect(lambda ev: (done.append(ev), app.quit()))
    sup.sig_failed.connect(lambda info: (done.append(info), app.quit()))
    QTimer.singleShot(int(timeout_s * 1000), app.quit)
    old = dict(os.environ)
    os.environ.update(env)  # the supervisor builds the child's environment from ours
    try:
        sup.start(str(run_yaml), str(run_dir), cwd=str(ROOT))
        app.exec()
    finally:
        os.environ.clear()
        os.environ.update(old)
    sup.shutdown(kill=True)
    if not done:
        raise SystemExit(f"studio run timed out after {timeout_s:.0f} s")
    if not series["loss"]:
        raise SystemExit("the studio received no step events")
    return rate_from_events(run_dir)


def make_run(work: Path, a, i: int, arm: str) -> tuple[Path, Path]:
    from engine.config import RunConfig

    run_dir = work / f"{arm}-{i}"
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": a.model_dir},
        "data": {"path": str(work / "train.jsonl"), "validation_split": 0.0, "max_length": a.max_length},
        "method": {"name": "lora", "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "train": {"max_steps": a.steps, "batch_size": a.batch_size, "logging_steps": 1},
        "output_dir": str(run_dir),
    })
    path = work / f"{arm}-{i}.yaml"
    cfg.save(path)
    return path, run_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo", help="`demo`, `tiny` (a built-in tiny Llama) or a model folder")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2, help="runs per arm, alternating")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per studio run")
    p.add_argument("--arms", default="headless,studio", help="also `pipe`: the supervisor's child "
                   "set-up without Qt (a diagnostic)")
    p.add_argument("--threads", type=int, default=None, help="OMP threads of the engine (default: inherit)")
    p.add_argument("--work", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(a.work or tempfile.mkdtemp(prefix="peft-overhead-"))
    if a.model == "demo":
        from engine.models import demo_model_dir

        a.model_dir = str(demo_model_dir())
    elif a.model == "tiny":
        from engine.testing import make_tiny_model

        a.model_dir = str(make_tiny_model(work / "tiny"))
    else:
        a.model_dir = a.model
    write_jsonl(work / "train.jsonl", make_records(max(64, a.steps * a.batch_size * 2), seed=0,
                                                   hi=a.max_length))
    env = child_env(work / "home", a.threads)
    arms = a.arms.split(",")
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    child_cpu: dict[str, list[float]] = {arm: [] for arm in arms}
    t0 = time.time()
    for i in range(a.repeats):
        for arm in arms if i % 2 == 0 else arms[::-1]:  # alternate the order against drifts
            yaml_path, run_dir = make_run(work, a, i, arm)
            cpu, child0 = time.process_time(), _children_cpu()
            r = (run_headless(yaml_path, run_dir, env) if arm == "headless"
                 else run_pipe(yaml_path, run_dir, env) if arm == "pipe"
                 else run_studio(yaml_path, run_dir, env, a.timeout))
            rates[arm].append(r)
            child_cpu[arm].append(_children_cpu() - child0)
            # This process's own CPU time is what watching the run costs beside it; the engine's
            # CPU time (start-up included) tells extra work in the child from a busy machine.
            print(f"[{arm} {i + 1}/{a.repeats}] {r:.1f} tokens/s; engine process {child_cpu[arm][-1]:.1f} CPU s, "
                  f"this process {time.process_time() - cpu:.2f} CPU s", flush=True)
    h, s = statistics.median(rates["headless"]), statistics.median(rates["studio"])
    print("median tokens/s: " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in rates.items())
          + "; engine CPU s per run: " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in child_cpu.items()))
    print(f"headless median {h:.1f} tokens/s, studio median {s:.1f} tokens/s: ratio {s / h:.3f} "
          f"(target ≥ 0.97); {time.time() - t0:.0f} s in all; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
