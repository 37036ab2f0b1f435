"""FSDP (FULL_SHARD, FSDP2) with two CPU processes over gloo, started by `peft-studio launch`:
the same losses and adapter as one process on the same global batch, a gathered standard peft
adapter, resume from a sharded checkpoint, and the estimator's per-rank bytes against what each
rank really holds.

Tolerances: step losses within 1e-5 relative and adapter tensors within 1e-4 absolute of the
one-process run (measured here: 0 and 2e-6; the only difference is the order of the gradient
reduction's additions). Per-rank bytes within 10% of the estimate (measured: exact).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.events import ListSink
from engine.training import train
from tests.engine.test_train import tiny_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="multi-process runs are tested on Linux")


def fsdp_config(model_dir, tmp_path, name: str, *, strategy="fsdp", processes=2, steps=4, **train_kw):
    """Global batch 4 (2 per rank × 2 ranks, or 4 on one process), a constant learning rate (so
    that a 4-step run and the first 4 steps of a 6-step run are the same), no evaluation."""
    cfg = tiny_config(model_dir, tmp_path, max_steps=steps, batch_size=4 // processes, scheduler="constant",
                      save_steps=2, save_total_limit=3, **train_kw)
    cfg.data.validation_split = 0.0
    cfg.output_dir = str(tmp_path / name)
    cfg.train.distributed.strategy, cfg.train.distributed.num_processes = strategy, processes
    return cfg


def launch(run_file: Path, *args, timeout: int = 420) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "engine", "launch", str(run_file), "--format", "json",
                           "--no-stdin", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, events


def tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def assert_close(a: dict, b: dict, atol: float = 1e-4) -> None:
    assert sorted(a) == sorted(b)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"adapters differ by {worst}"


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    """The reference: one process, 6 steps of global batch 4, checkpoints every 2 steps."""
    tmp = tmp_path_factory.mktemp("one")
    cfg = fsdp_config(tiny_model_dir, tmp, "run", strategy="single", processes=1, steps=6)
    sink = ListSink()
    res = train(cfg, sinks=[sink])
    assert res.status == "finished", res.error
    return {"losses": [s["loss"] for s in sink.of("step")], "dir": Path(cfg.output_dir)}


def test_fsdp_two_cpu_processes_match_one_and_resume(tiny_model_dir, tmp_path, one_process):
    cfg = fsdp_config(tiny_model_dir, tmp_path, "fsdp")
    run_file = tmp_path / "fsdp.yaml"
    cfg.save(run_file)
    proc, events = launch(run_file)
    assert proc.returncode == 0, proc.stderr[-4000:]
    kinds = [e["event"] for e in events]
    assert kinds.count("started") == 1 and kinds.count("finished") == 1    # rank 0 reports, once
    started = events[kinds.index("started")]
    assert started["world_size"] == 2 and started["distributed_type"] == "FSDP"
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses) == 4
    assert losses == pytest.approx(one_process["losses"][:4], rel=1e-5)

    run_dir = Path(cfg.output_dir)
    adapter = run_dir / "adapter"
    assert (run_dir / "accelerate_config.yaml").exists()
    # Rank 0 wrote a whole adapter (gathered, not a shard), equal to one process's after 4 steps.
    assert_close(tensors(adapter), tensors(one_process["dir"] / "checkpoints" / "checkpoint-4"))
    # ... that plain peft loads onto the plain base.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    saved = tensors(adapter)
    state = loaded.state_dict()
    for k, v in saved.items():
        live = state[k.replace(".weight", ".default.weight")]
        assert live.shape == v.shape and (live - v).abs().max() == 0
    # Each checkpoint holds a gathered adapter as well as the sharded state for resuming.
    ckpt = run_dir / "checkpoints" / "checkpoint-2"
    assert_close(tensors(ckpt), tensors(one_process["dir"] / "checkpoints" / "checkpoint-2"))
    assert any(p.name.startswith("pytorch_model_fsdp") for p in ckpt.iterdir())

    # The estimate's per-rank parameters, gradients and optimizer state against what each rank
    # held before its second optimizer step (activations excluded: they are not sharded).
    from engine.estimate import estimate

    est = estimate(cfg, "cpu")
    held = events[kinds.index("finished")]["metrics"]["rank_bytes"]
    assert len(held) == 2
    for rank in held:
        for key in ("parameters", "gradients", "optimizer_states"):
            assert rank[key] == pytest.approx(est.resident[key], rel=0.10), key
        assert sum(rank.values()) == pytest.approx(
            sum(est.resident[k] for k in ("parameters", "gradients", "optimizer_states")), rel=0.10)

    # Resume under FSDP: two more steps from the sharded checkpoint-4, as one process would have
    # continued them.
    cfg.train.max_steps, cfg.train.resume_from = 6, "latest"
    cfg.save(run_file)
    proc, events = launch(run_file)
    assert proc.returncode == 0, proc.stderr[-4000:]
    started = next(e for e in events if e["event"] == "started")
    assert started["resumed_from_step"] == 4 and started["distributed_type"] == "FSDP"
    resumed = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in resumed] == [5, 6]
    assert [e["loss"] for e in resumed] == pytest.approx(one_process["losses"][4:], rel=1e-5)
    assert_close(tensors(adapter), tensors(one_process["dir"] / "adapter"))
