"""`qlora-bf16-on-cpu`: QLoRA with model.dtype bfloat16 on the CPU trains (it crashed at step 1
with "float != BFloat16" in the chunked loss: k-bit-prepared fp32 norms met the bf16 head)."""

from __future__ import annotations

import pytest

from engine.events import ListSink
from engine.training import train
from tests.engine.cases import case_config


def test_qlora_in_bfloat16_on_the_cpu_trains(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    bf16 = tmp_path / "tiny-bf16"  # the case: a bf16 copy of the tiny Llama
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(bf16)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(bf16)
    cfg = case_config("qlora-bf16-on-cpu", tmp_path, bf16)
    cfg.train.max_steps = 3
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    losses = [e["loss"] for e in sink.of("step")]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)
    assert any("chunked" in e["message"] for e in sink.of("log"))  # the path that crashed


def test_the_chunked_loss_takes_hidden_states_in_another_dtype():
    """The loss equals the standard one when the hidden states are fp32 and the head bf16."""
    import torch

    from engine.training.loss import linear_cross_entropy_sum

    torch.manual_seed(0)
    h = torch.randn(10, 16, requires_grad=True)
    w = torch.randn(40, 16).to(torch.bfloat16)
    y = torch.randint(0, 40, (10,))
    got = linear_cross_entropy_sum(h, w, None, y, chunk=4)
    want = torch.nn.functional.cross_entropy((h.to(torch.bfloat16) @ w.t()).float(), y, reduction="sum")
    assert torch.allclose(got, want, rtol=1e-3)
    got.backward()
    assert h.grad is not None and h.grad.dtype == torch.float32
