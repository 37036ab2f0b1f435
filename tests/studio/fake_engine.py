"""A stand-in for ``python -m engine train run.yaml``: speaks the same event protocol, fast.

Used for supervisor edge cases and the latency benchmark, where a real model would only add
minutes. Behaviour is steered by environment variables:

FAKE_STEPS (20)   steps to run          FAKE_DELAY (0.02)  seconds per step
FAKE_CRASH (-1)   exit(3) silently after this step
FAKE_FAIL (0)     emit a ``failed`` event with a hint instead of training
FAKE_ERROR, FAKE_HINT  that event's error and hint (default: an out-of-memory message)
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from engine.events import JsonlSink, MultiReporter, StreamSink  # noqa: E402


def main(argv: list[str]) -> int:
    assert argv[:1] == ["train"], argv
    cfg = yaml.safe_load(Path(argv[1]).read_text())
    run_dir = Path(cfg["output_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    rep = MultiReporter(StreamSink(), JsonlSink(run_dir / "events.jsonl"))
    steps = int(os.environ.get("FAKE_STEPS", 20))
    delay = float(os.environ.get("FAKE_DELAY", 0.02))
    crash = int(os.environ.get("FAKE_CRASH", -1))
    stop = threading.Event()

    def listen():
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
                return

    threading.Thread(target=listen, daemon=True).start()
    print("fake engine: loading", file=sys.stderr, flush=True)
    if os.environ.get("FAKE_FAIL"):
        print("/x/site-packages/transformers/modeling_utils.py:3312: FutureWarning: `x` is deprecated.",
              file=sys.stderr, flush=True)
        print("  warnings.warn(", file=sys.stderr, flush=True)
        rep.emit("failed", error=os.environ.get("FAKE_ERROR", "CUDA out of memory."),
                 hint=os.environ.get("FAKE_HINT", "Try a smaller batch."))
        return 1
    rep.emit("started", config=cfg, total_params=1000, trainable_params=10, device="cpu",
             run_dir=str(run_dir), total_steps=steps, pid=os.getpid())
    t0 = time.time()
    for step in range(1, steps + 1):
        time.sleep(delay)
        el = time.time() - t0
        rep.emit("step", step=step, total_steps=steps, epoch=step / steps, loss=3.0 * math.exp(-step / 10) + 0.1,
                 lr=2e-4 * (1 - step / steps), grad_norm=1.0 / step, tokens_per_s=1000.0 + step,
                 mem_allocated=1e8 + step * 1e5, mem_reserved=2e8, elapsed_s=el, eta_s=el / step * (steps - step))
        if step % 5 == 0:
            rep.emit("eval", step=step, eval_loss=3.2 * math.exp(-step / 10) + 0.2)
        if step == crash:
            print("fake engine: segfault-ish crash", file=sys.stderr, flush=True)
            os._exit(3)
        if stop.is_set():
            adapter = run_dir / "adapter"
            adapter.mkdir(exist_ok=True)
            rep.emit("stopped", step=step, adapter_dir=str(adapter), run_dir=str(run_dir))
            return 0
    adapter = run_dir / "adapter"
    adapter.mkdir(exist_ok=True)
    rep.emit("finished", adapter_dir=str(adapter), run_dir=str(run_dir), step=steps,
             metrics={"final_loss": 0.2})
    rep.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
