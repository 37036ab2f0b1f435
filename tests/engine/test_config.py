"""RunConfig: YAML round trip, overrides, and every validation error names its field."""

from __future__ import annotations

import pytest

from engine.config import ConfigError, RunConfig
from engine.methods import PARAMS


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = RunConfig()
    cfg.validate()
    path = tmp_path / "run.yaml"
    cfg.save(path)
    again = RunConfig.load(path)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("method", sorted(PARAMS))
def test_every_method_round_trips(method, tmp_path):
    cfg = RunConfig().with_overrides([f"method.name={method}"])
    assert cfg.method.name == method
    text = cfg.to_yaml()
    assert RunConfig.from_yaml(text) == cfg


def test_design_example_run_file_parses():
    text = """
model:  {name_or_path: demo, dtype: auto, quantization: null}
data:   {path: resources/demo/train.jsonl, format: auto, validation_split: 0.1, max_length: 512}
method: {name: lora, r: 16, alpha: 32, dropout: 0.05, target_modules: [q_proj, v_proj]}
train:  {epochs: 1, max_steps: -1, batch_size: 4, grad_accum: 1, lr: 2.0e-4, seed: 42,
         gradient_checkpointing: false, optimizer: adamw_torch, packing: true}
output_dir: runs/my-run
"""
    cfg = RunConfig.from_yaml(text).validate()
    assert cfg.method.target_modules == ["q_proj", "v_proj"]
    assert cfg.train.lr == pytest.approx(2e-4)
    assert isinstance(cfg.train.epochs, float)


def test_overrides_parse_types():
    cfg = RunConfig().with_overrides(["train.lr=1e-4", "train.batch_size=2", "train.packing=false",
                                      "method.target_modules=[q_proj,v_proj]", "output_dir=runs/x"])
    assert cfg.train.lr == 1e-4 and cfg.train.batch_size == 2 and cfg.train.packing is False
    assert cfg.method.target_modules == ["q_proj", "v_proj"]
    assert cfg.output_dir == "runs/x"


def test_switching_method_starts_from_its_defaults():
    cfg = RunConfig().with_overrides(["method.r=8", "method.name=prefix_tuning"])
    assert cfg.method.name == "prefix_tuning"
    assert not hasattr(cfg.method, "r")


@pytest.mark.parametrize(
    "overrides, path, fragment",
    [
        (["model.dtype=float8"], "model.dtype", "valid: auto"),
        (["model.quantization=int4"], "model.quantization", "nf4"),
        (["data.format=xml"], "data.format", "alpaca"),
        (["data.validation_split=0.9"], "data.validation_split", "≤ 0.5"),
        (["data.max_length=0"], "data.max_length", "≥ 8"),
        (["train.batch_size=0"], "train.batch_size", "≥ 1"),
        (["train.grad_accum=0"], "train.grad_accum", "≥ 1"),
        (["train.lr=-1"], "train.lr", "≥ 0"),
        (["train.optimizer=lion"], "train.optimizer", "adamw_8bit"),
        (["train.scheduler=step"], "train.scheduler", "cosine"),
        (["train.max_steps=0"], "train.max_steps", "positive"),
        (["train.epochs=0"], "train.epochs", "> 0"),
        (["train.warmup_ratio=2"], "train.warmup_ratio", "≤ 1"),
        (["method.r=0"], "method.r", "≥ 1"),
        (["method.dropout=0.95"], "method.dropout", "≤ 0.9"),
        (["method.target_modules=everything"], "method.target_modules", "auto"),
        (["method.name=qlora", "model.quantization=int8"], "model.quantization", "4-bit"),
        (["train.loraplus_lr_ratio=16", "method.name=ia3"], "train.loraplus_lr_ratio", "LoRA"),
        (["output_dir= "], "output_dir", "folder"),
    ],
)
def test_validation_errors_name_the_field(overrides, path, fragment):
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides(overrides).validate()
    assert err.value.path == path
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "text, path, fragment",
    [
        ("model: {name_or_path: demo, colour: red}", "model.colour", "name_or_path"),
        ("trainer: {lr: 1}", "trainer", "valid: model, data, train"),
        ("method: {name: lorax}", "method.name", "valid:"),
        ("method: {name: lora, num_virtual_tokens: 3}", "method.num_virtual_tokens", "r, alpha"),
        ("train: {batch_size: four}", "train.batch_size", "whole number"),
        ("train: {lr: fast}", "train.lr", "number"),
        ("train: {packing: maybe}", "train.packing", "true or false"),
        ("data: {columns: [a, b]}", "data.columns", "mapping"),
    ],
)
def test_parse_errors_name_the_field(text, path, fragment):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_yaml(text)
    assert err.value.path == path
    assert fragment in str(err.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  name_or_path: demo\n train: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        RunConfig.load(p)
    assert str(p) in str(err.value) and "line" in str(err.value)


def test_missing_run_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "nope.yaml")


def test_errors_lists_every_bad_field():
    cfg = RunConfig().with_overrides(["train.batch_size=0", "data.max_length=2"])
    paths = [e.path for e in cfg.errors()]
    assert "train.batch_size" in paths and "data.max_length" in paths


def test_every_field_has_help():
    from dataclasses import fields

    from engine.config import DataConfig, ModelConfig, TrainConfig

    for klass in [ModelConfig, DataConfig, TrainConfig, *PARAMS.values()]:
        for f in fields(klass):
            assert f.metadata.get("help"), f"{klass.__name__}.{f.name} has no help text"


def test_atomic_save_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "run.yaml"
    RunConfig().save(p)
    before = p.read_text()
    import os

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    cfg = RunConfig().with_overrides(["train.lr=0.5"])
    with pytest.raises(OSError):
        cfg.save(p)
    assert p.read_text() == before
    assert [x.name for x in tmp_path.iterdir()] == ["run.yaml"]
