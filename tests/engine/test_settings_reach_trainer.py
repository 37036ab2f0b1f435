"""Every setting means what its help says: for each run-file field, what the Trainer receives.

A run is started for real (engine.training.train on the tiny model) and stopped at the moment
the Trainer would take its first step: its arguments, the model, the collator, the data and the
peft config are read there and compared with the field's help and unit. Every field of
ModelConfig, DataConfig and TrainConfig is either checked here or listed in NOT_OBSERVABLE with
the test that covers it; the main method families' fields are checked against the peft config,
and every generated peft tuner's fields reach peft's config class unchanged.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.events import ListSink


class _Reached(Exception):
    pass


def capture(cfg: RunConfig, monkeypatch) -> tuple[object, ListSink]:
    """The Trainer exactly as engine.training builds it for ``cfg`` (its train() not run)."""
    from transformers import Trainer

    from engine.training import train

    seen = {}

    def stop(self, *a, **kw):
        seen["trainer"] = self
        raise _Reached()

    monkeypatch.setattr(Trainer, "train", stop)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert "trainer" in seen, result.error
    return seen["trainer"], sink


def data_rows(n: int = 40) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}? " + "x " * (i % 9)},
                                  {"role": "assistant", "content": f"It is {i % 7 + i % 5}."}]})
    return rows


@pytest.fixture()
def base_cfg(tiny_model_dir, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data_rows()), encoding="utf-8")

    def make(**fields) -> RunConfig:
        cfg = RunConfig.from_dict({"model": {"name_or_path": str(tiny_model_dir)},
                                   "data": {"path": str(path), "max_length": 64, "validation_split": 0.0},
                                   "method": {"name": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"]},
                                   "train": {"max_steps": 4, "batch_size": 2}, "output_dir": str(tmp_path / "run")})
        for key, value in fields.items():
            section, name = key.split(".")
            if section == "method" and name == "name":
                cfg = cfg.with_overrides([f"method.name={value}"])
            else:
                setattr(getattr(cfg, section), name, value)
        return cfg

    return make


# Fields whose effect is not visible on the Trainer object, and the test that covers each.
NOT_OBSERVABLE = {
    "model.trust_remote_code": "passed to from_pretrained only (tests/engine/test_models.py)",
    "model.offline": "where a hub id is looked up (tests/engine/test_models.py)",
    "data.format": "how records are read (tests/engine/test_data_readers.py)",
    "data.columns": "column mapping (tests/engine/test_data_readers.py)",
    "data.skip_bad_lines": "bad lines (tests/engine/test_data_errors.py)",
    "train.resume_from": "tests/engine/test_resume_safety.py",
    "data.sources": "mixing several files (tests/engine/test_data_pipeline.py, test_data_cases.py; preference "
                    "data: test_preference_sources.py)",
    "data.mix_stopping": "when a mix ends (tests/engine/test_data_pipeline.py, test_preference_sources.py)",
    "data.num_proc": "datasets.map workers (tests/engine/test_data_pipeline.py)",
    "data.cache": "the fingerprint cache (tests/engine/test_data_pipeline.py)",
    "data.long_examples": "chunking or dropping long examples (tests/engine/test_data_shapes.py)",
    "data.replacements": "placeholders filled (tests/engine/test_data_shapes.py)",
    "data.reasoning": "reasoning parts kept or dropped (tests/engine/test_data_shapes.py)",
    "data.sample_by": "plain text split into examples (tests/engine/test_data_shapes.py)",
    "train.distributed": "accelerate's config per strategy (tests/engine/test_distributed_config.py, test_fsdp.py)",
}


def _all_fields() -> list[str]:
    return [f"{s}.{f.name}" for s, k in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig))
            for f in dataclasses.fields(k)]


CHECKED: set[str] = set()


def checks(*names):
    def deco(fn):
        CHECKED.update(names)
        return fn
    return deco


def test_every_field_is_checked_or_says_where_it_is():
    missing = [f for f in _all_fields() if f not in CHECKED and f not in NOT_OBSERVABLE]
    assert missing == [], f"fields nobody checks against their help: {missing}"


# ---- train.* --------------------------------------------------------------------------------------

@checks("train.max_steps", "train.batch_size", "train.grad_accum", "train.lr", "train.scheduler",
        "train.weight_decay", "train.max_grad_norm", "train.optimizer", "train.seed", "train.logging_steps",
        "train.save_steps", "train.save_total_limit", "train.eval_steps", "train.dataloader_workers",
        "train.group_by_length", "train.torch_compile", "output_dir")
def test_training_arguments_follow_the_fields(base_cfg, monkeypatch):
    cfg = base_cfg(**{"train.max_steps": 7, "train.batch_size": 3, "train.grad_accum": 2, "train.lr": 3e-4,
                      "train.scheduler": "cosine", "train.weight_decay": 0.05, "train.max_grad_norm": 0.5,
                      "train.optimizer": "adamw_torch", "train.seed": 123, "train.logging_steps": 3,
                      "train.save_steps": 5, "train.save_total_limit": 1, "train.eval_steps": 2,
                      "train.dataloader_workers": 0, "train.group_by_length": True, "train.packing": False,
                      "data.validation_split": 0.2, "train.torch_compile": False})
    trainer, _ = capture(cfg, monkeypatch)
    a = trainer.args
    assert (a.max_steps, a.per_device_train_batch_size, a.gradient_accumulation_steps) == (7, 3, 2)
    assert a.learning_rate == 3e-4 and a.lr_scheduler_type == "cosine" and a.weight_decay == 0.05
    assert a.max_grad_norm == 0.5 and a.optim == "adamw_torch" and a.seed == 123 and a.data_seed == 123
    assert a.logging_steps == 3 and (a.save_strategy, a.save_steps, a.save_total_limit) == ("steps", 5, 1)
    assert (a.eval_strategy, a.eval_steps) == ("steps", 2)
    assert a.dataloader_num_workers == 0 and a.train_sampling_strategy == "group_by_length"
    assert a.torch_compile is False and a.output_dir.startswith(cfg.output_dir)
    assert next(iter(trainer.get_train_dataloader()))["input_ids"].shape[0] == 3  # examples per forward
    # The effective batch: batch_size × grad_accum examples per optimizer step.
    assert a.per_device_train_batch_size * a.gradient_accumulation_steps == 6


@checks("train.epochs")
def test_epochs_count_passes_over_the_data_and_max_steps_wins(base_cfg, monkeypatch):
    trainer, sink = capture(base_cfg(**{"train.max_steps": -1, "train.epochs": 2.0, "train.batch_size": 4}),
                            monkeypatch)
    assert trainer.args.num_train_epochs == 2.0 and trainer.args.max_steps == -1
    n = len(trainer.train_dataset)
    assert n == 40
    steps_per_epoch = math.ceil(n / 4)
    assert trainer.args.num_train_epochs * steps_per_epoch == 20  # what the started event will say


def _lrs(trainer, steps: int) -> list[float]:
    """The learning rate of each of the run's optimizer steps, from the Trainer's own schedule."""
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    out = []
    for _ in range(steps):
        out.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return out


@checks("train.warmup_ratio")
@pytest.mark.parametrize("ratio,warm", [(0.0, 0), (0.25, 2), (0.5, 4), (1.0, 8)])
def test_warmup_ratio_is_a_fraction_of_the_runs_steps(base_cfg, monkeypatch, ratio, warm):
    trainer, _ = capture(base_cfg(**{"train.max_steps": 8, "train.warmup_ratio": ratio, "train.lr": 1e-3,
                                     "train.scheduler": "constant_with_warmup"}), monkeypatch)
    lrs = _lrs(trainer, 8)
    # constant_with_warmup: lr × step / warm-up steps during warm-up, then the peak.
    assert lrs[warm:] == pytest.approx([1e-3] * (8 - warm))
    assert all(x < 1e-3 for x in lrs[:warm])


def test_zero_means_off(base_cfg, monkeypatch):
    """max_grad_norm 0: no clipping; save_steps 0: no checkpoints; eval_steps 0: evaluation at the
    end only (fit evaluates once after training when there is validation data)."""
    trainer, _ = capture(base_cfg(**{"train.max_grad_norm": 0.0, "train.save_steps": 0, "train.eval_steps": 0,
                                     "data.validation_split": 0.2}), monkeypatch)
    assert trainer.args.max_grad_norm >= 1e8  # no gradient is ever that large
    assert trainer.args.save_strategy == "no" and trainer.args.eval_strategy == "no"
    assert len(trainer.eval_dataset) == 8


@checks("train.gradient_checkpointing")
def test_gradient_checkpointing_is_on_in_the_model(base_cfg, monkeypatch):
    trainer, _ = capture(base_cfg(**{"train.gradient_checkpointing": True}), monkeypatch)
    assert trainer.model.get_base_model().is_gradient_checkpointing


@checks("train.packing")
def test_packing_concatenates_a_batch_into_one_row(base_cfg, monkeypatch):
    trainer, _ = capture(base_cfg(**{"train.packing": True, "train.batch_size": 3}), monkeypatch)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch and "attention_mask" not in batch
    assert int((batch["position_ids"][0] == 0).sum()) == 3  # three examples, positions restart for each
    trainer, _ = capture(base_cfg(**{"train.packing": False, "train.batch_size": 3}), monkeypatch)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 3 and "attention_mask" in batch


@checks("train.loraplus_lr_ratio")
def test_loraplus_ratio_multiplies_the_b_matrices_learning_rate(base_cfg, monkeypatch):
    trainer, _ = capture(base_cfg(**{"train.loraplus_lr_ratio": 16.0, "train.lr": 1e-4}), monkeypatch)
    opt = trainer.optimizer
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for group in opt.param_groups:
        kinds = {("lora_B" in names[id(p)]) for p in group["params"] if id(p) in names}
        if kinds == {True}:
            assert group["lr"] == pytest.approx(16e-4)
        elif kinds == {False}:
            assert group["lr"] == pytest.approx(1e-4)


@checks("train.report_to", "train.early_stopping", "train.keep_best", "train.divergence")
def test_what_watches_the_run_reaches_the_trainer(base_cfg, monkeypatch):
    """Issue 16's fields: the trackers are the Trainer's own callbacks; early stopping (with the
    best state) and the divergence guard are callbacks holding the fields' values. Their behaviour
    is tested in tests/engine/test_evals.py."""
    from engine.config import DivergenceConfig, EarlyStoppingConfig

    cfg = base_cfg(**{"train.report_to": ["tensorboard"], "train.eval_steps": 2, "data.validation_split": 0.2,
                      "train.keep_best": True,
                      "train.early_stopping": EarlyStoppingConfig(metric="eval_loss", patience=2, min_delta=0.01),
                      "train.divergence": DivergenceConfig(enabled=True, factor=5.0, steps=2)})
    cfg.eval.forgetting = False
    trainer, _ = capture(cfg, monkeypatch)
    assert trainer.args.report_to == ["tensorboard"]
    names = {type(c).__name__: c for c in trainer.callback_handler.callbacks}
    assert "TensorBoardCallback" in names
    stopper, guard = names["EarlyStopping"], names["DivergenceGuard"]
    assert (stopper.metric, stopper.patience, stopper.min_delta, stopper.lower) == ("eval_loss", 2, 0.01, True)
    assert stopper.keeps_best and (guard.factor, guard.steps) == (5.0, 2)
    cfg = base_cfg(**{"train.eval_steps": 2, "data.validation_split": 0.2, "train.keep_best": False,
                      "train.divergence": DivergenceConfig(enabled=False)})
    cfg.eval.forgetting = False
    trainer, _ = capture(cfg, monkeypatch)
    names = {type(c).__name__: c for c in trainer.callback_handler.callbacks}
    assert trainer.args.report_to == [] and "TensorBoardCallback" not in names
    assert "DivergenceGuard" not in names and not names["EarlyStopping"].keeps_best


@checks("train.loss_impl", "train.loss_chunk_tokens")
def test_loss_implementation_and_chunk(base_cfg, monkeypatch):
    from engine.training.loss import LinearCrossEntropyLoss

    trainer, sink = capture(base_cfg(**{"train.loss_impl": "chunked", "train.loss_chunk_tokens": 32}), monkeypatch)
    assert isinstance(trainer.fast_loss, LinearCrossEntropyLoss) and trainer.fast_loss.chunk == 32
    assert any("32 tokens a chunk" in e["message"] for e in sink.of("log"))
    trainer, _ = capture(base_cfg(**{"train.loss_impl": "standard"}), monkeypatch)
    assert trainer.fast_loss is None


# ---- model.* --------------------------------------------------------------------------------------

@checks("model.name_or_path", "model.dtype", "model.attn_implementation")
def test_model_fields(base_cfg, monkeypatch, tiny_model_dir):
    import torch

    trainer, sink = capture(base_cfg(**{"model.dtype": "bfloat16", "model.attn_implementation": "eager"}),
                            monkeypatch)
    base = trainer.model.get_base_model()
    assert base.config._name_or_path == str(tiny_model_dir)
    frozen = [p for p in base.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert trainer.args.bf16  # bf16 compute, as on a GPU (the CPU gets autocast too)
    assert base.config._attn_implementation == "eager"
    assert any(e["message"] == "Attention: eager" for e in sink.of("log"))


@checks("model.quantization", "model.double_quant", "model.upcast_embeddings")
@pytest.mark.parametrize("double,upcast", [(True, False), (False, True)])
def test_quantization_fields(base_cfg, monkeypatch, double, upcast):
    pytest.importorskip("bitsandbytes")
    import torch

    cfg = base_cfg(**{"model.quantization": "nf4", "model.double_quant": double, "model.dtype": "bfloat16",
                      "model.upcast_embeddings": upcast})
    trainer, sink = capture(cfg, monkeypatch)
    base = trainer.model.get_base_model()
    q = base.model.layers[0].self_attn.q_proj.base_layer.weight
    assert type(q).__name__ == "Params4bit" and q.quant_type == "nf4" and q.compress_statistics is double
    emb = base.get_input_embeddings().weight
    assert emb.dtype == (torch.float32 if upcast else torch.bfloat16)
    # Parameter counts are the model's real ones: 4-bit weights pack two values per byte.
    from transformers import AutoModelForCausalLM

    plain = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path).parameters())
    logged = next(e["message"] for e in sink.of("log") if "trainable of" in e["message"])
    assert f"of {plain:,} parameters" in logged


# ---- data.* ---------------------------------------------------------------------------------------

@checks("data.path", "data.max_examples", "data.validation_split", "data.validation_path", "data.max_length",
        "data.drop_long", "data.train_on_prompt", "data.system_prompt")
def test_data_fields_reach_the_datasets(base_cfg, monkeypatch, tmp_path):
    import json

    from engine.data import IGNORE_INDEX

    trainer, _ = capture(base_cfg(**{"data.max_examples": 10}), monkeypatch)
    assert len(trainer.train_dataset) == 10
    trainer, _ = capture(base_cfg(**{"data.validation_split": 0.25}), monkeypatch)
    assert (len(trainer.train_dataset), len(trainer.eval_dataset)) == (30, 10)
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in data_rows(3)), encoding="utf-8")
    trainer, _ = capture(base_cfg(**{"data.validation_path": str(val)}), monkeypatch)
    assert (len(trainer.train_dataset), len(trainer.eval_dataset)) == (40, 3)
    # The examples are 35 to 51 tokens long; 24 of them fit in 44.
    trainer, _ = capture(base_cfg(**{"data.max_length": 44}), monkeypatch)
    truncated = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    assert max(len(e["input_ids"]) for e in truncated) == 44 and len(truncated) > 24
    trainer, _ = capture(base_cfg(**{"data.max_length": 44, "data.drop_long": True}), monkeypatch)
    assert len(trainer.train_dataset) == 24 and max(
        len(trainer.train_dataset[i]["input_ids"]) for i in range(24)) <= 44

    trainer, _ = capture(base_cfg(**{"data.train_on_prompt": False}), monkeypatch)
    masked = sum(1 for t in trainer.train_dataset[0]["labels"] if t == IGNORE_INDEX)
    trainer, _ = capture(base_cfg(**{"data.train_on_prompt": True}), monkeypatch)
    assert sum(1 for t in trainer.train_dataset[0]["labels"] if t == IGNORE_INDEX) < masked

    from transformers import AutoTokenizer

    cfg = base_cfg(**{"data.system_prompt": "Be terse."})
    trainer, _ = capture(cfg, monkeypatch)
    tok = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    assert "Be terse." in tok.decode(trainer.train_dataset[0]["input_ids"])


# ---- method.* (main families) ---------------------------------------------------------------------

def test_lora_fields_reach_peft(base_cfg, monkeypatch):
    cfg = base_cfg(**{"method.r": 6})
    m = cfg.method
    m.alpha, m.dropout, m.target_modules, m.use_rslora, m.bias = 24.0, 0.1, ["q_proj", "o_proj"], True, "lora_only"
    m.modules_to_save = ["lm_head"]
    trainer, _ = capture(cfg, monkeypatch)
    pc = trainer.model.peft_config["default"]
    assert (pc.r, pc.lora_alpha, pc.lora_dropout, set(pc.target_modules)) == (6, 24.0, 0.1, {"q_proj", "o_proj"})
    assert pc.use_rslora and pc.bias == "lora_only" and list(pc.modules_to_save) == ["lm_head"]
    assert trainer.model.base_model.model.model.layers[0].self_attn.q_proj.scaling["default"] == \
        pytest.approx(24.0 / math.sqrt(6))  # rsLoRA: alpha / √r, as the help says


@pytest.mark.parametrize("name,fields,expect", [
    ("dora", {"r": 4}, {"use_dora": True, "r": 4}),
    ("ia3", {}, {}),
    ("prompt_tuning", {"num_virtual_tokens": 5, "init": "text", "init_text": "Be brief."},
     {"num_virtual_tokens": 5, "prompt_tuning_init_text": "Be brief."}),
    ("p_tuning", {"num_virtual_tokens": 6, "encoder_type": "LSTM", "encoder_hidden_size": 16},
     {"num_virtual_tokens": 6, "encoder_hidden_size": 16}),
    ("prefix_tuning", {"num_virtual_tokens": 7, "prefix_projection": True, "encoder_hidden_size": 32},
     {"num_virtual_tokens": 7, "prefix_projection": True, "encoder_hidden_size": 32}),
])
def test_method_family_fields_reach_peft(base_cfg, monkeypatch, name, fields, expect):
    cfg = base_cfg(**{"method.name": name})
    for k, v in fields.items():
        setattr(cfg.method, k, v)
    trainer, _ = capture(cfg, monkeypatch)
    pc = trainer.model.peft_config["default"]
    for k, v in expect.items():
        got = getattr(pc, k)
        assert (got.value if hasattr(got, "value") else got) == v, k
    if name == "p_tuning":
        assert str(pc.encoder_reparameterization_type).endswith("LSTM")


def test_every_generated_peft_tuners_fields_reach_peft_unchanged(tiny_model_dir):
    """The generated parameter classes (engine.methods.peft) hand each field to peft's config
    class under its own name: a value set in the run file is the value peft sees."""
    from engine.methods import PARAMS, context_for, registered
    from engine.methods.apply import meta_model
    from engine.methods.peft.catalog import PEFT_METHODS, peft_field_names
    from engine.methods.peft.tuners import peft_config

    model = None
    checked = 0
    for name in registered():
        if name not in PEFT_METHODS:
            continue
        cfg = RunConfig.from_dict({"model": {"name_or_path": str(tiny_model_dir)}, "method": {"name": name}})
        if model is None:
            model = meta_model(cfg)
        ctx = context_for(model, cfg)
        try:
            conf = peft_config(PEFT_METHODS[name], cfg, ctx)
        except Exception:
            continue  # a tuner that needs a field set (AdaLoRA's total_step) is covered elsewhere
        for field in peft_field_names(PARAMS[name]):
            if field == "target_modules":
                continue
            ours, theirs = getattr(cfg.method, field), getattr(conf, field)
            theirs = theirs.value if hasattr(theirs, "value") else theirs
            if isinstance(theirs, (set, tuple)):
                theirs = list(theirs)
            assert ours == theirs or (ours is None and theirs in (None, [], {})) or str(ours) == str(theirs), \
                f"{name}.{field}: run file {ours!r}, peft {theirs!r}"
            checked += 1
    assert checked > 100


@checks("train.task", "train.preference")
@pytest.mark.parametrize("task,options,expected,trainer_name", [
    ("dpo", {"beta": 0.3, "loss_type": "robust", "label_smoothing": 0.1},
     {"beta": 0.3, "loss_type": ["robust"], "label_smoothing": 0.1, "precompute_ref_log_probs": False}, "DPOTrainer"),
    ("dpo", {"rpo_alpha": 0.5},
     {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}, "DPOTrainer"),
    ("kto", {"beta": 0.2, "desirable_weight": 1.5, "undesirable_weight": 0.5, "precompute_ref_log_probs": True},
     {"beta": 0.2, "loss_type": "kto", "desirable_weight": 1.5, "undesirable_weight": 0.5,
      "precompute_ref_log_probs": True}, "KTOTrainer"),
    ("orpo", {"beta": 0.4}, {"beta": 0.4}, "ORPOTrainer"),
    ("simpo", {"beta": 2.0, "simpo_gamma": 1.0, "cpo_alpha": 0.5, "label_smoothing": 0.05},
     {"beta": 2.0, "loss_type": "simpo", "simpo_gamma": 1.0, "cpo_alpha": 0.5, "label_smoothing": 0.05}, "CPOTrainer"),
])
def test_preference_task_and_options_reach_trl(task, options, expected, trainer_name, base_cfg, tmp_path, monkeypatch):
    """train.task picks TRL's trainer; each train.preference field arrives in TRL's config under
    its TRL name; data.max_length is TRL's max_length; the method's model is the one trained."""
    import json

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i}?", "chosen": f"It is {i}.", "rejected": "No."}) + "\n"
                            for i in range(12)), encoding="utf-8")
    cfg = base_cfg(**{"train.task": task, "data.path": str(path)})
    for k, v in options.items():
        setattr(cfg.train.preference, k, v)
    trainer, _ = capture(cfg, monkeypatch)
    assert any(c.__name__ == trainer_name for c in type(trainer).__mro__)
    for k, v in expected.items():
        assert getattr(trainer.args, k) == v, k
    assert trainer.args.max_length == 64
    assert not trainer.args.activation_checkpointing  # the method's to set, as for SFT
    assert "default" in trainer.model.peft_config and "ref" not in trainer.model.peft_config
