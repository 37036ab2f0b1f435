"""GPU-only checks (skipped without CUDA): QLoRA on a real 4-bit CUDA base, bf16 autocast."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_qlora_trains_on_cuda_with_a_4bit_base(tiny_model_dir, tmp_path):
    from engine.events import ListSink
    from engine.training import train
    from tests.engine.test_train import tiny_config

    cfg = tiny_config(tiny_model_dir, tmp_path)
    cfg = cfg.with_overrides(["method.name=qlora", "train.lr=5e-3", "train.max_steps=10"])
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    steps = sink.of("step")
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert steps[-1]["mem_allocated"] > 0 and steps[-1]["mem_reserved"] >= steps[-1]["mem_allocated"]
    assert sink.of("started")[0]["device"] == "cuda"
