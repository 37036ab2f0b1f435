"""Preflight for every combination: what a method declares it cannot work with is refused before
any data or weights load, naming both fields and what to choose instead; and a refused run leaves
no run folder and no index row.

The walk reads the declarations (``MethodSpec.incompatibilities()``) of every registered method,
so a method that declares a new incompatibility is covered the moment it registers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import ListSink
from engine.methods import get_method, registered
from tests.engine.test_methods import CASES, _marks


class Loaded(Exception):
    """Raised by the stand-in loaders: the run got past preflight."""


@pytest.fixture()
def loaders_fail(monkeypatch):
    """Data preparation and weight loading raise Loaded: anything refused must be refused first."""
    import engine.training.build
    import engine.training.run

    def data(*a, **kw):
        raise Loaded("data")

    def weights(*a, **kw):
        raise Loaded("weights")

    monkeypatch.setattr(engine.training.run, "prepare_data", data)
    monkeypatch.setattr(engine.training.build, "load_model", weights)


def _declared():
    out = []
    for name in registered():
        for inc in get_method(name).incompatibilities():
            out.append(pytest.param(name, inc, id=f"{name}-{inc.field}", marks=_marks(name)))
    return out


def _config(name, request, tmp_path, **fields) -> RunConfig:
    case = CASES.get(name, {})
    model = request.getfixturevalue(case.get("model", "tiny_model_dir"))
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": str(model)},
        "data": {"path": str(tmp_path / "data.jsonl"), "max_length": 64},
        "method": {"name": name, **case.get("params", {})},
        "train": {"max_steps": 2, "batch_size": 2},
        "output_dir": str(tmp_path / "run"),
    })
    for key, value in fields.items():
        section, field = key.split(".")
        setattr(getattr(cfg, section), field, value)
    return cfg


def test_the_walk_is_not_empty():
    """prefix tuning vs gradient checkpointing (the prompt-methods-in-chat case) and a quantized
    base for methods without quantized layers are declared."""
    fields = {(n, i.field) for n in registered() for i in get_method(n).incompatibilities()}
    assert ("prefix_tuning", "train.gradient_checkpointing") in fields
    assert ("full", "model.quantization") in fields


@pytest.mark.parametrize("name,inc", _declared())
def test_each_declared_incompatibility_is_refused_before_data_or_weights_load(name, inc, request, tmp_path,
                                                                               monkeypatch, loaders_fail):
    import torch

    from engine.runs import RunIndex

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    if inc.device is not None:  # where the run would train decides; nothing touches the device first
        monkeypatch.setattr(torch.cuda, "is_available", lambda: inc.device == "cuda")
    bad = _config(name, request, tmp_path, **{inc.field: inc.values[0]})
    if inc.when is not None and not inc.when(bad):
        pytest.skip("the declaration needs another field too")
    sink = ListSink()
    result = get_train()(bad, sinks=[sink])
    assert result.status == "failed" and result.user_error, result.error
    error = sink.of("failed")[0]["error"]
    spec = get_method(name)
    assert error.startswith(f"{inc.field}: ") and f"method.name: {name}" in error and spec.title in error
    assert "Choose " in error and inc.instead in error
    assert not Path(bad.output_dir).exists(), "a refused run must leave no folder"
    assert RunIndex().list() == []

    # Without the incompatible value the same run gets past preflight (to the stand-in loaders).
    good = _config(name, request, tmp_path, **{inc.field: _other(inc)})
    result = get_train()(good, sinks=[ListSink()])
    assert "data" in (result.error or "") or "weights" in (result.error or ""), result.error


def _other(inc):
    """A value of the field that the declaration does not refuse (its default, else a choice)."""
    import dataclasses

    from engine.config import ModelConfig, TrainConfig

    section, field = inc.field.split(".")
    klass = {"model": ModelConfig, "train": TrainConfig}[section]
    f = {f.name: f for f in dataclasses.fields(klass)}[field]
    candidates = [f.default, *f.metadata.get("choices", []), True, False]
    return next(v for v in candidates if v not in inc.values and (v is not None or f.default is None))


def get_train():
    from engine.training import train

    return train


def test_prefix_tuning_with_gradient_checkpointing_names_both_fields(tiny_model_dir, tmp_path, monkeypatch,
                                                                     loaders_fail):
    """The case's third fault: the library's raw ValueError after the weights loaded."""
    from tests.engine.cases import case_config

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    cfg = case_config("prompt-methods-in-chat", tmp_path, tiny_model_dir)
    cfg = cfg.with_overrides(["method.name=prefix_tuning", "train.gradient_checkpointing=true"])
    sink = ListSink()
    result = get_train()(cfg, sinks=[sink])
    error = sink.of("failed")[0]["error"]
    assert result.user_error and "train.gradient_checkpointing" in error and "method.name: prefix_tuning" in error
    assert "train.gradient_checkpointing: false" in error


def test_a_method_that_cannot_pack_turns_packing_off_with_a_word_before_the_data_loads(tiny_model_dir, tmp_path,
                                                                                        monkeypatch, loaders_fail):
    """train.packing's help says prompt-based methods turn it off: they do, and say so first."""
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    cfg = RunConfig.from_dict({"model": {"name_or_path": str(tiny_model_dir)}, "data": {"path": "x.jsonl"},
                               "method": {"name": "prompt_tuning", "init": "random"},
                               "train": {"packing": True}, "output_dir": str(tmp_path / "run")})
    sink = ListSink()
    result = get_train()(cfg, sinks=[sink])
    assert "data" in result.error  # it went on to the data
    assert any("packing is turned off" in e["message"] and "train.packing" in e["message"]
               for e in sink.of("warning"))


@pytest.mark.parametrize("name", [n for n in registered() if not get_method(n).can_merge
                                  and not get_method(n).saves_full_model][:3])
def test_merging_a_method_that_cannot_merge_loads_no_weights_and_says_why(name, tiny_model_dir, tmp_path,
                                                                         monkeypatch):
    """export --merge of a method that does not fold into the weights exports the adapter with
    the method's reason, without loading the base."""
    from transformers import AutoModelForCausalLM

    from engine.export import export_merged
    from engine.export.testing import make_adapter_run

    run = make_adapter_run(tmp_path / "run", tiny_model_dir, name, **CASES.get(name, {}).get("params", {}))

    def refuse(*a, **kw):
        raise AssertionError("the base was loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    res = export_merged(run, tmp_path / "merged")
    spec = get_method(name)
    assert f"{spec.title} cannot be merged" in res.note and (spec.merge_note or "base weights") in res.note
