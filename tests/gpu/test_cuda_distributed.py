"""Multi-GPU strategies (skipped below two GPUs, or without deepspeed): the same checks as the CPU
tests in tests/engine/test_fsdp.py, on CUDA with NCCL. DeepSpeed cannot run on CPU processes
(accelerate starts it only on an accelerator), so these are its only runtime tests. The one-GPU
FSDP and FSDP-QLoRA runs are steps of the prepared GPU check (benchmarks/gpu_check.py)."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                 reason="needs two CUDA GPUs")]


def _run(tiny_model_dir, tmp_path, strategy: str, **section):
    from tests.engine.test_fsdp import fsdp_config, launch

    cfg = fsdp_config(tiny_model_dir, tmp_path, strategy, strategy=strategy)
    cfg.model.dtype = "float32"
    for key, value in section.items():
        setattr(getattr(cfg.train.distributed, strategy), key, value)
    run_file = tmp_path / f"{strategy}.yaml"
    cfg.save(run_file)
    proc, events = launch(run_file)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return cfg, events


def test_fsdp_on_two_gpus_saves_a_whole_adapter(tiny_model_dir, tmp_path):
    cfg, events = _run(tiny_model_dir, tmp_path, "fsdp")
    started = next(e for e in events if e["event"] == "started")
    assert started["distributed_type"] == "FSDP" and started["world_size"] == 2
    from tests.engine.test_fsdp import tensors

    assert tensors(tmp_path / "fsdp" / "adapter")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs the deepspeed package")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_on_two_gpus(tiny_model_dir, tmp_path, stage):
    cfg, events = _run(tiny_model_dir, tmp_path, "deepspeed", zero_stage=stage)
    started = next(e for e in events if e["event"] == "started")
    assert started["distributed_type"] == "DEEPSPEED"
    assert any(e["event"] == "finished" for e in events)
