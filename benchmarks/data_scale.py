"""Data preparation at scale: peak memory, first and second preparation time, cores used.

Generates an alpaca-style data set (200,000 rows by default; ``--rows 1000000`` or ``--million``
for a million), builds the tiny test model (engine/testing.py), and runs

    python -m engine train run.yaml --set train.max_steps=1

twice, as a child process, with the data cache in the work folder (the first run prepares the data,
the second should find it in the cache). For each run it prints:

* peak RSS and peak PSS of the whole process tree (the engine and its tokenizing workers; RSS counts
  pages shared between a forked worker and its parent once per process, PSS shares them out);
* data preparation time: from the engine's "Model: …" log line (the tokenizer loads next) to its
  "Prepared N training …" line, both timestamped by the engine's own events;
* CPU used during that time, in cores (CPU seconds of the tree ÷ wall seconds): 2.0 is both cores
  on a quiet machine; on a shared one the tree gets only its share, so the CPU seconds of each
  tokenizing worker are printed too (two workers with similar seconds: both cores were used).

``--code DIR`` runs another checkout's engine (e.g. ``--code /work/main`` for the code before the
datasets pipeline); the data, model and settings are the same. Times depend on what else the
machine runs: compare runs made side by side, and read the ratios rather than the seconds.

    python benchmarks/data_scale.py                    # 200k rows, this checkout
    python benchmarks/data_scale.py --rows 20000 --code /work/main
    python benchmarks/data_scale.py --million
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("river mountain quiet engine letter garden winter market signal orange window pattern simple "
         "number forest bridge travel method silver answer history planet cotton mirror stone table "
         "thunder circle season market music harbor lantern meadow ocean paper rocket saddle tunnel velvet").split()


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """An alpaca file (instruction, input, output) of ``rows`` varied rows, about 500 bytes each."""
    rng = random.Random(seed)

    def sentence(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."

    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            row = {"instruction": f"{sentence(4, 14)} Explain item {i}.",
                   "input": sentence(3, 20) if rng.random() < 0.4 else "",
                   "output": " ".join(sentence(5, 16) for _ in range(rng.randint(1, 5)))}
            fh.write(json.dumps(row) + "\n")


class TreeMonitor(threading.Thread):
    """Samples the process tree of ``pid``: peak RSS and PSS (sums over the tree), CPU seconds."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.series: list[tuple[float, int, int, int]] = []  # (time, tree RSS, tree PSS, root RSS)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.worker_cpu: dict[int, float] = {}   # pid → CPU seconds last seen (processes below the root)

    def procs(self):
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        """CPU seconds of the tree so far: the root's own and its reaped children's, plus live ones'."""
        import psutil

        total = 0.0
        for p in self.procs():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
            if p.pid == self.root.pid:
                total += t.children_user + t.children_system
        return total

    def run(self):
        import psutil

        while not self.stop.is_set():
            rss = pss = 0
            for p in self.procs():
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += info.pss
                    if p.pid != self.root.pid:
                        t = p.cpu_times()
                        self.worker_cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
            try:
                root_rss = self.root.memory_info().rss
            except psutil.Error:
                root_rss = 0
            with self.lock:
                self.peak_rss = max(self.peak_rss, rss)
                self.peak_pss = max(self.peak_pss, pss)
                self.series.append((time.time(), rss, pss, root_rss))
            self.stop.wait(self.interval)


def run_once(run_file: Path, env: dict, code: Path, label: str) -> dict:
    cmd = [sys.executable, "-m", "engine", "train", str(run_file), "--format", "json", "--no-stdin",
           "--set", "train.max_steps=1"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    mon = TreeMonitor(proc.pid)
    mon.start()
    marks: dict = {}
    last = None
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        last = ev
        msg = ev.get("message", "")
        if ev["event"] == "log" and msg.startswith("Model:") and "model" not in marks:
            marks["model"] = (ev["time"], mon.cpu_seconds())
        elif ev["event"] == "log" and msg.startswith("Prepared ") and "prepared" not in marks:
            marks["prepared"] = (ev["time"], mon.cpu_seconds())
    proc.wait()
    mon.stop.set()
    mon.join()
    out = {"label": label, "status": last["event"] if last else "no events", "wall_s": time.time() - t0,
           "peak_rss_gb": mon.peak_rss / 1e9, "peak_pss_gb": mon.peak_pss / 1e9}
    if last and last["event"] == "failed":
        out["error"] = last.get("error")
    if "model" in marks and "prepared" in marks:
        (t_a, c_a), (t_b, c_b) = marks["model"], marks["prepared"]
        out["prep_s"] = t_b - t_a
        out["prep_cpu_s"] = c_b - c_a
        out["prep_cores"] = (c_b - c_a) / max(t_b - t_a, 1e-9)
        # Where the peak is: while preparing the data, or after (model, optimizer, the step).
        during = [x for x in mon.series if t_a <= x[0] <= t_b]
        after = [x for x in mon.series if x[0] > t_b]
        out["prep_peak_rss_gb"] = max((x[1] for x in during), default=0) / 1e9
        out["prep_peak_engine_rss_gb"] = max((x[3] for x in during), default=0) / 1e9
        out["after_peak_rss_gb"] = max((x[1] for x in after), default=0) / 1e9
    # Worker processes that did real work (tokenizing workers; DataLoader workers are off here).
    out["workers_cpu_s"] = sorted((round(v, 1) for v in mon.worker_cpu.values() if v >= 1.0), reverse=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--million", action="store_true", help="1,000,000 rows")
    ap.add_argument("--work", default="/tmp/peft-studio-data-scale", help="folder for data, model, cache, runs")
    ap.add_argument("--code", default=str(REPO), help="the checkout whose engine runs (default: this one)")
    ap.add_argument("--runs", type=int, default=2, help="runs of the same file (the first fills the cache)")
    ap.add_argument("--keep-cache", action="store_true", help="do not clear the data cache before the first run")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = 1_000_000 if a.million else a.rows
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from engine.testing import make_tiny_model

    model = work / "tiny-model"
    if not (model / "config.json").exists():
        make_tiny_model(model)
    data = work / f"alpaca-{rows}.jsonl"
    if not data.exists():
        t = time.time()
        generate(data, rows)
        print(f"generated {data} ({data.stat().st_size / 1e6:.0f} MB) in {time.time() - t:.0f} s", file=sys.stderr)
    run_file = work / f"run-{rows}.yaml"
    run_file.write_text(
        f"model: {{name_or_path: {model}}}\n"
        # No validation split: the run's one step is then all there is besides preparing the data
        # (an evaluation pass over a 10% hold-out would dominate the wall time on a CPU).
        f"data: {{path: {data}, validation_split: 0.0, max_length: 512}}\n"
        "method: {name: lora, r: 8, alpha: 16, target_modules: [q_proj, v_proj]}\n"
        "train: {max_steps: 1, batch_size: 4}\n"
        f"output_dir: {work / 'run'}\n", encoding="utf-8")
    cache = work / "cache"
    if not a.keep_cache and cache.exists():
        import shutil

        shutil.rmtree(cache)
    env = {**os.environ, "PYTHONPATH": str(a.code), "PEFT_STUDIO_DATA_CACHE": str(cache),
           "PEFT_STUDIO_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    results = []
    load = os.getloadavg()[0]
    for k in range(a.runs):
        r = run_once(run_file, env, Path(a.code), "first" if k == 0 else f"run {k + 1}")
        r.update(rows=rows, code=str(a.code), load_before=load)
        results.append(r)
        print(json.dumps(r), file=sys.stderr)
        load = os.getloadavg()[0]
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{rows:,} alpaca rows, {data.stat().st_size / 1e6:.0f} MB, code {a.code}, {os.cpu_count()} cores")
    print(f"{'run':8} {'status':9} {'peak RSS':>9} {'peak PSS':>9} {'prep s':>8} {'cpu s':>7} {'cores':>6} "
          f"{'wall s':>8} {'load':>5}  worker cpu s")
    for r in results:
        prep = f"{r['prep_s']:.1f}" if "prep_s" in r else "-"
        cpu = f"{r['prep_cpu_s']:.0f}" if "prep_cpu_s" in r else "-"
        cores = f"{r['prep_cores']:.2f}" if "prep_cores" in r else "-"
        print(f"{r['label']:8} {r['status']:9} {r['peak_rss_gb']:8.2f}G {r['peak_pss_gb']:8.2f}G {prep:>8} {cpu:>7} "
              f"{cores:>6} {r['wall_s']:8.1f} {r['load_before']:5.1f}  {r['workers_cpu_s']}")
    if len(results) > 1 and "prep_s" in results[0] and "prep_s" in results[1]:
        print(f"second / first preparation time: {results[1]['prep_s'] / results[0]['prep_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
