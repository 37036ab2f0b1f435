"""The speed levers inside real runs: the fast defaults train exactly like the plain recipe."""

from __future__ import annotations

import pytest

from engine.config import RunConfig
from engine.events import ListSink
from engine.training import train


def tiny_config(model_dir, tmp_path, **train) -> RunConfig:
    """A few steps of LoRA on the tiny model with a chat data set of mixed lengths."""
    import json

    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?" + " Why?" * (i % 6)},
                          {"role": "assistant", "content": f"Ahoy! It be {i % 7 + i % 5}, arr." + " Aye." * (i % 9)}]}
            for i in range(48)]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    cfg = RunConfig()
    cfg.model.name_or_path = str(model_dir)
    cfg.data.path, cfg.data.max_length, cfg.data.validation_split = str(data), 64, 0.1
    cfg.method.target_modules, cfg.method.dropout = "auto", 0.0
    cfg.train.lr, cfg.train.batch_size, cfg.train.max_steps = 5e-3, 4, 10
    cfg.output_dir = str(tmp_path / "run")
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def run(cfg) -> ListSink:
    sink = ListSink()
    res = train(cfg, sinks=[sink])
    assert res.status == "finished", res.error
    return sink


def logs(sink: ListSink) -> list[str]:
    return [e["message"] for e in sink.of("log")]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_fast_defaults_give_the_same_losses_as_the_plain_path(tiny_model_dir, tmp_path, grad_accum):
    fast = tiny_config(tiny_model_dir, tmp_path / "fast", max_steps=4, grad_accum=grad_accum)
    plain = tiny_config(tiny_model_dir, tmp_path / "plain", max_steps=4, grad_accum=grad_accum,
                        loss_impl="standard")
    plain.model.attn_implementation = "sdpa"
    a, b = run(fast), run(plain)
    assert any("sdpa_varlen" in m for m in logs(a)) and any("chunked" in m for m in logs(a))
    assert any("model's own" in m for m in logs(b))
    la = [s["loss"] for s in a.of("step")]
    lb = [s["loss"] for s in b.of("step")]
    assert len(la) == len(lb) == 4
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-4 * max(1.0, abs(y)), (la, lb)
    assert la[-1] < la[0]  # it trains
    ea = a.of("finished")[0]["metrics"].get("eval_loss")
    eb = b.of("finished")[0]["metrics"].get("eval_loss")
    assert ea is not None and abs(ea - eb) <= 1e-4 * max(1.0, eb)


def test_prompt_tuning_keeps_the_models_own_loss(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path, max_steps=1)
    cfg = cfg.with_overrides(["method.name=prompt_tuning"])
    sink = run(cfg)
    assert any("prompt-learning" in m for m in logs(sink))


def test_new_fields_round_trip_and_validate(tmp_path):
    from engine.config import ConfigError

    cfg = RunConfig().with_overrides(["train.loss_impl=standard", "train.torch_compile=true",
                                      "train.loss_chunk_tokens=512", "model.attn_implementation=sdpa_varlen",
                                      "model.upcast_embeddings=true"])
    again = RunConfig.from_yaml(cfg.to_yaml()).validate()
    assert again.train.loss_impl == "standard" and again.train.torch_compile is True
    assert again.train.loss_chunk_tokens == 512 and again.model.attn_implementation == "sdpa_varlen"
    assert again.model.upcast_embeddings is True
    with pytest.raises(ConfigError, match="train.loss_impl"):
        RunConfig().with_overrides(["train.loss_impl=fused"]).validate()


def test_torch_compile_reaches_the_trainer(tmp_path):
    from engine.training.arguments import training_args

    cfg = RunConfig().with_overrides(["train.torch_compile=true"])
    assert training_args(cfg, tmp_path, has_eval=False, packing=True).torch_compile is True
    assert training_args(RunConfig(), tmp_path, has_eval=False, packing=True).torch_compile is False


def test_frozen_embeddings_go_back_to_the_compute_dtype(tiny_model_dir):
    """peft's k-bit preparation upcasts everything to fp32; frozen embeddings need not stay so."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from engine.training.speed import downcast_frozen_embeddings

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=False)
    assert m.get_input_embeddings().weight.dtype == torch.float32
    m = get_peft_model(m, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    saved = downcast_frozen_embeddings(m)
    emb = m.get_base_model().get_input_embeddings().weight
    assert saved == emb.numel() * 2 and emb.dtype == torch.bfloat16  # tied head: counted once
    norm = m.get_base_model().model.norm.weight
    assert norm.dtype == torch.float32  # norms stay as peft left them
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(input_ids=torch.tensor([[1, 5, 9, 4]]), labels=torch.tensor([[1, 5, 9, 4]]))
    out.loss.backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)
