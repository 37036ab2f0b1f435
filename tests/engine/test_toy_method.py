"""A method family defined here, in the test, and nowhere else: registered with one call, it gets
an estimate, a training run, a saved adapter and a reload — the "adding a method" checklist of
docs/architecture.md, proven without touching any other file.

The family trains only the final normalisation layer's weight ("final norm tuning"): a handful
of parameters, saved as the changed tensors, mergeable because they are the base's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from engine.config import RunConfig
from engine.events import EVENT_CLASSES, ListSink, payload_fields
from engine.fields import F
from engine.methods import MethodParams, MethodSpec, register, unregister
from engine.methods.spec import name_field
from engine.methods.storage import freeze_except, load_changed, merged, save_changed

NAME = "final_norm"


@dataclass
class FinalNormParams(MethodParams):
    """Final norm tuning: only the last normalisation layer's scale trains."""

    name: str = name_field(NAME)
    also_bias: bool = F(False, "Train the final norm's bias too, where it has one.")


def _final_norm_names(model) -> list[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    norm = base.model.norm  # Llama-style decoders end in `model.norm`
    wanted = {id(p) for p in norm.parameters()}
    return [n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in wanted]


def _build(model, cfg, ctx):
    names = [n for n in _final_norm_names(model) if n.endswith(".weight") or cfg.method.also_bias]
    freeze_except(model, names, NAME, cfg.method)
    return model


SPEC = MethodSpec(
    name=NAME, title="Final norm", family="toy", params=FinalNormParams, build=_build, can_merge=True,
    save=save_changed, load=load_changed, merge=merged, saved_as="tensors", supports_quantized_base=False,
    description="Trains the final normalisation layer only.")


@pytest.fixture(scope="module")
def toy_method():
    register(SPEC)
    try:
        yield SPEC
    finally:
        unregister(NAME)


def _config(model_dir, tmp_path) -> RunConfig:
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"Ahoy! {i} plus {i} be {2 * i}."} for i in range(24)]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    text = (f"model: {{name_or_path: {model_dir}}}\n"
            f"data: {{path: {data}, max_length: 48, validation_split: 0.1}}\n"
            f"method: {{name: {NAME}, also_bias: false}}\n"
            "train: {max_steps: 6, batch_size: 4, lr: 5.0e-2, logging_steps: 1}\n"
            f"output_dir: {tmp_path / 'run'}\n")
    return RunConfig.from_yaml(text).validate()


@pytest.fixture(scope="module")
def trained(toy_method, tiny_model_dir, tmp_path_factory):
    from engine.training import train

    root = tmp_path_factory.mktemp("toy")
    cfg = _config(tiny_model_dir, root)
    sink = ListSink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEFT_STUDIO_HOME", str(root / "home"))  # the run index stays out of the user's home
        result = train(cfg, sinks=[sink])
    return cfg, sink, result


def test_a_run_file_names_the_new_method(toy_method):
    cfg = RunConfig().with_overrides([f"method.name={NAME}", "method.also_bias=true"])
    assert isinstance(cfg.method, FinalNormParams) and cfg.method.also_bias is True
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg


def test_the_new_method_gets_an_estimate(toy_method, tiny_model_dir, tmp_path):
    from engine.estimate import estimate

    est = estimate(_config(tiny_model_dir, tmp_path), "24GB")
    assert est.trainable_params == 64  # the tiny model's hidden size: one norm scale
    # AdamW keeps two moments the size of the trained parameters (bf16 on the GPU planned for).
    assert est.components["trainable_params"] == 64 * 2
    assert est.components["optimizer_states"] == 2 * est.components["trainable_params"]
    assert est.verdict == "fits" and est.peak_allocated > 0


def test_the_new_method_trains_saves_and_reloads(trained, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.methods.storage import load_trained, method_of

    cfg, sink, result = trained
    assert result.status == "finished", result.error
    started = sink.of("started")[0]
    assert started["method"] == NAME and started["trainable_params"] == 64
    assert method_of(result.adapter_dir) == NAME

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = base.model.norm.weight.detach().clone()
    q_proj = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    reloaded = load_trained(base, result.adapter_dir)
    after = reloaded.model.norm.weight.detach()
    assert not torch.equal(before, after)  # it trained, and the reload restored what it trained
    assert torch.equal(q_proj, reloaded.model.layers[0].self_attn.q_proj.weight)  # nothing else moved


def test_a_training_run_sends_every_field_the_contract_promises(trained):
    """The fields marked *always* in engine.events (and docs/architecture.md) really are sent."""
    _cfg, sink, _result = trained
    for kind in ("started", "step", "eval", "finished"):
        sent = sink.of(kind)
        assert sent, kind
        promised = {f.name for f in payload_fields(EVENT_CLASSES[kind]) if f.metadata["always"]}
        assert promised <= set(sent[-1]), f"{kind} lacks {promised - set(sent[-1])}"
