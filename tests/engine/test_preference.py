"""Preference tuning (train.task dpo, orpo, kto, simpo) on TRL's trainers: the run-file fields,
every data shape turned into TRL's columns, real runs on the tiny model, resume, refusals."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.data.errors import DataError
from engine.data.preference import prepare_preference_data, read_preference
from engine.errors import ConfigError
from engine.events import CallbackSink, ListSink
from engine.training import StopFlag, train

# ---- the run file ---------------------------------------------------------------------------


def test_task_and_its_options_are_typed_fields():
    cfg = RunConfig().with_overrides(["train.task=dpo", "train.preference.beta=0.25",
                                      "train.preference.loss_type=ipo"])
    assert cfg.train.task == "dpo" and cfg.train.preference.beta == 0.25
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="train.task"):
        RunConfig().with_overrides(["train.task=rlhf"]).validate()
    with pytest.raises(ConfigError, match="train.preference.loss_type.*not a loss of KTO"):
        RunConfig().with_overrides(["train.task=kto", "train.preference.loss_type=ipo"]).validate()
    with pytest.raises(ConfigError, match="train.batch_size.*KTO"):
        RunConfig().with_overrides(["train.task=kto", "train.batch_size=1"]).validate()
    with pytest.raises(ConfigError, match="train.preference.label_smoothing"):
        RunConfig().with_overrides(["train.task=dpo", "train.preference.loss_type=exo_pair"]).validate()
    with pytest.raises(ConfigError, match="train.preference.beta"):
        RunConfig().with_overrides(["train.preference.beta=-1"]).validate()


def test_trl_keys_the_run_file_takes_elsewhere_say_where():
    # A TRL DPOConfig copied into a run file: max_prompt_length is gone from TRL 1.16, and the length
    # is data.max_length; the message names the key and the field to set instead of "unknown field".
    data = {"train": {"task": "dpo", "preference": {"max_prompt_length": 64}}}
    with pytest.raises(ConfigError, match=r"train\.preference\.max_prompt_length: is not a field.*data\.max_length"):
        RunConfig.from_dict(data)
    with pytest.raises(ConfigError, match=r"train\.preference\.ref_model: .*adapter disabled"):
        RunConfig.from_dict({"train": {"preference": {"ref_model": "x"}}})
    with pytest.raises(ConfigError, match=r"train\.preference\.bogus: unknown field; valid: beta"):
        RunConfig.from_dict({"train": {"preference": {"bogus": 1}}})


def test_fields_say_which_tasks_they_serve():
    import dataclasses

    from engine.config import PreferenceConfig
    from engine.tasks import TASK_NAMES

    for f in dataclasses.fields(PreferenceConfig):
        assert f.metadata["help"], f.name
        assert set(f.metadata["tasks"]) <= set(TASK_NAMES) and "sft" not in f.metadata["tasks"], f.name


# ---- data shapes ----------------------------------------------------------------------------

def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


USER = {"role": "user", "content": "Name a prime."}
SHAPE_CASES = {
    "prompt_chosen_rejected": (
        {"prompt": "Name a prime.", "chosen": "7", "rejected": "8"},
        {"prompt": [USER], "chosen": [{"role": "assistant", "content": "7"}],
         "rejected": [{"role": "assistant", "content": "8"}]}),
    "prompt_chosen_rejected_messages": (
        {"prompt": [USER], "chosen": [{"role": "assistant", "content": "7"}],
         "rejected": [{"role": "assistant", "content": "8"}]},
        {"prompt": [USER], "chosen": [{"role": "assistant", "content": "7"}],
         "rejected": [{"role": "assistant", "content": "8"}]}),
    "messages_chosen_rejected": (
        {"messages": [{"role": "system", "content": "Be brief."}, USER],
         "chosen": {"role": "assistant", "content": "7"}, "rejected": {"role": "assistant", "content": "8"}},
        {"prompt": [{"role": "system", "content": "Be brief."}, USER],
         "chosen": [{"role": "assistant", "content": "7"}], "rejected": [{"role": "assistant", "content": "8"}]}),
    "sharegpt_chosen_rejected": (
        {"conversations": [{"from": "human", "value": "Name a prime."}],
         "chosen": {"from": "gpt", "value": "7"}, "rejected": {"from": "gpt", "value": "8"}},
        {"prompt": [USER], "chosen": [{"role": "assistant", "content": "7"}],
         "rejected": [{"role": "assistant", "content": "8"}]}),
    "alpaca_chosen_rejected": (
        {"instruction": "Name a prime.", "input": "Below 10.", "chosen": "7", "rejected": "8"},
        {"prompt": [{"role": "user", "content": "Name a prime.\n\nBelow 10."}],
         "chosen": [{"role": "assistant", "content": "7"}], "rejected": [{"role": "assistant", "content": "8"}]}),
    "chosen_rejected": (
        {"chosen": [USER, {"role": "assistant", "content": "7"}],
         "rejected": [USER, {"role": "assistant", "content": "8"}]},
        {"prompt": [USER], "chosen": [{"role": "assistant", "content": "7"}],
         "rejected": [{"role": "assistant", "content": "8"}]}),
    "kto_prompt_completion": (
        {"prompt": "Name a prime.", "completion": "7", "label": True},
        {"prompt": [USER], "completion": [{"role": "assistant", "content": "7"}], "label": True}),
    "kto_messages": (
        {"messages": [USER, {"role": "assistant", "content": "8"}], "label": False},
        {"prompt": [USER], "completion": [{"role": "assistant", "content": "8"}], "label": False}),
}


@pytest.mark.parametrize("case", list(SHAPE_CASES))
def test_each_shape_is_detected_and_turned_into_trl_columns(case, tmp_path):
    row, expected = SHAPE_CASES[case]
    path = _write(tmp_path / "prefs.jsonl", [row, row])
    expect = "unpaired" if case.startswith("kto") else "paired"
    records, shape, bad = read_preference(path, {}, expect)
    assert shape.shape == case.removesuffix("_messages") if case != "kto_messages" else shape.shape == case
    assert shape.reason.startswith("columns")
    assert not bad and records == [expected, expected]


def test_columns_can_be_mapped_and_a_system_prompt_added(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"question": "Name a prime.", "good": "7", "bad": "8"}] * 2)
    records, shape, _ = read_preference(path, {"prompt": "question", "chosen": "good", "rejected": "bad"},
                                        "paired", system_prompt="Be brief.")
    assert shape.shape == "prompt_chosen_rejected"
    assert records[0]["prompt"] == [{"role": "system", "content": "Be brief."}, USER]
    assert records[0]["rejected"] == [{"role": "assistant", "content": "8"}]


def test_data_that_cannot_serve_the_task_is_refused_with_its_reason(tmp_path):
    sft = _write(tmp_path / "sft.jsonl", [{"messages": [USER, {"role": "assistant", "content": "7"}]}])
    with pytest.raises(DataError, match="not preference data.*chosen/rejected") as e:
        read_preference(sft, {}, "paired")
    assert e.value.file.endswith("sft.jsonl")
    kto = _write(tmp_path / "kto.jsonl", [{"prompt": "Name a prime.", "completion": "7", "label": True}])
    with pytest.raises(DataError, match="true/false label") as e:
        read_preference(kto, {}, "paired")
    assert "train.task: kto" in str(e.value)
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"},
                                          {"prompt": "a", "chosen": "", "rejected": "c"}])
    with pytest.raises(DataError, match="empty chosen or rejected") as e:
        read_preference(bad, {}, "paired")
    assert "2" in str(e.value)  # names the record
    records, _, skipped = read_preference(bad, {}, "paired", skip=True)
    assert len(records) == 1 and len(skipped) == 1


def test_report_counts_pairs_identical_answers_and_length_balance(tmp_path, tiny_tokenizer):
    rows = [{"prompt": f"q{i}", "chosen": "a long and careful answer", "rejected": "no"} for i in range(8)]
    rows += [{"prompt": "same", "chosen": "x y", "rejected": "x y"}] * 2
    from engine.config import DataConfig

    data = DataConfig(path=_write(tmp_path / "p.jsonl", rows), validation_split=0.2)
    prepared = prepare_preference_data(data, "paired", tiny_tokenizer, seed=0)
    rep = prepared.report
    assert rep.pairs == 8 and rep.eval == 2 and len(prepared.train) == 8 and len(prepared.eval) == 2
    n_identical = sum(r["chosen"] == r["rejected"] for r in prepared.train)
    assert rep.identical == pytest.approx(n_identical / 8)
    assert rep.length_ratio > 1.5 and rep.chosen_tokens > rep.rejected_tokens
    text = "\n".join(rep.lines())
    assert "pairs for training" in text and "identical chosen and rejected" in text and "length balance" in text
    assert any("length" in n for n in rep.notes)


def test_pairs_given_to_kto_become_labelled_answers(tmp_path):
    from engine.config import DataConfig

    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(6)]
    prepared = prepare_preference_data(DataConfig(path=_write(tmp_path / "p.jsonl", rows), validation_split=0),
                                       "unpaired", seed=0)
    assert set(prepared.train.column_names) == {"prompt", "completion", "label"}
    labels = prepared.train["label"]
    assert sorted(labels) == [False] * 6 + [True] * 6
    assert labels[:6] != [True] * 6, "shuffled so that a KTO batch holds both labels"


# ---- training -------------------------------------------------------------------------------

def write_pairs(path: Path, n: int = 48) -> Path:
    """Pairs whose chosen answer is right and rejected one is a fixed refusal."""
    rows = []
    for i in range(n):
        a, b = i % 7, (i * 3) % 5
        rows.append({"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} is {a + b}.",
                     "rejected": "I cannot say."})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def pref_config(model_dir, tmp_path: Path, task: str, method: dict | None = None, **train_kw) -> RunConfig:
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(write_pairs(tmp_path / "pairs.jsonl")), "max_length": 64, "validation_split": 0.1},
        "method": method or {"name": "lora", "dropout": 0.0},
        "train": {"task": task, "max_steps": 10, "batch_size": 4, "lr": 5e-3, "seed": 0, "logging_steps": 1,
                  **train_kw},
        "output_dir": str(tmp_path / "run"),
    })
    return cfg


def _assert_standard_adapter(model_dir, adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (adapter / "adapter_config.json").exists()
    assert not (adapter / "ref").exists(), "the reference is the adapter disabled, not a saved copy"
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([[1, 5, 9, 14, 20, 3]])
    with torch.no_grad():
        before = base(ids).logits.clone()
        tuned = PeftModel.from_pretrained(base, adapter)(ids).logits[:, -ids.shape[1]:]  # past virtual tokens
    assert torch.isfinite(tuned).all() and not torch.allclose(before, tuned)


RUNS = [pytest.param("dpo", "lora", id="dpo-lora"), pytest.param("orpo", "lora", id="orpo-lora"),
        pytest.param("kto", "lora", id="kto-lora"), pytest.param("simpo", "lora", id="simpo-lora"),
        pytest.param("dpo", "ia3", id="dpo-ia3"), pytest.param("dpo", "dora", id="dpo-dora"),
        pytest.param("dpo", "prompt_tuning", id="dpo-prompt_tuning"),
        pytest.param("dpo", "qlora", id="dpo-qlora", marks=pytest.mark.skipif(
            importlib.util.find_spec("bitsandbytes") is None, reason="qlora needs bitsandbytes"))]


@pytest.mark.parametrize("task,method", RUNS)
def test_preference_run_trains_and_saves_a_peft_adapter(task, method, tiny_model_dir, tmp_path):
    params = {"name": method} if method in ("ia3", "prompt_tuning") else {"name": method, "dropout": 0.0}
    lr = 5e-2 if method in ("ia3", "prompt_tuning") else 5e-3
    cfg = pref_config(tiny_model_dir, tmp_path, task, params, lr=lr)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    started = sink.of("started")[0]
    assert started["task"] == task and started["train_examples"] > 0
    steps = sink.of("step")
    assert [s["step"] for s in steps] == list(range(1, 11))
    for s in steps:
        assert s["loss"] is not None and math.isfinite(s["loss"]) and s["tokens"] > 0 and s["trained_tokens"] > 0
        assert "rewards/chosen" in s["metrics"] or task == "kto"
    # The preference moves the right way: the reward margin (chosen − rejected) grows.
    margins = [s["metrics"]["rewards/margins"] for s in steps if s["metrics"].get("rewards/margins") is not None]
    assert margins[-1] > margins[0], margins
    if task != "kto":
        assert steps[-1]["metrics"]["rewards/accuracies"] >= steps[0]["metrics"]["rewards/accuracies"]
    assert any("pairs for training" in e["message"] for e in sink.of("log"))
    _assert_standard_adapter(tiny_model_dir, Path(result.adapter_dir))


def test_dpo_reference_is_the_adapter_disabled(tiny_model_dir, tmp_path, monkeypatch):
    """TRL adds a 'ref' copy of the adapter; we remove it so the reference is the base itself,
    and no second copy of the model is ever loaded."""
    import trl.trainer.dpo_trainer as dpo_mod

    def no_second_model(*a, **kw):
        raise AssertionError("a second copy of the model was loaded as the reference")

    monkeypatch.setattr(dpo_mod, "create_model_from_path", no_second_model)
    from engine.training import run as run_mod

    seen = {}
    real = run_mod.make_preference_trainer

    def spy(p, *a, **kw):
        trainer = real(p, *a, **kw)
        seen["adapters"] = list(p.built.model.peft_config)
        seen["ref_model"] = trainer.ref_model
        return trainer

    monkeypatch.setattr(run_mod, "make_preference_trainer", spy)
    cfg = pref_config(tiny_model_dir, tmp_path, "dpo", max_steps=2)
    assert train(cfg).status == "finished"
    assert seen == {"adapters": ["default"], "ref_model": None}


def test_full_fine_tuning_dpo_precomputes_its_reference(tiny_model_dir, tmp_path, monkeypatch):
    import trl.trainer.dpo_trainer as dpo_mod

    monkeypatch.setattr(dpo_mod, "create_model_from_path",
                        lambda *a, **kw: (_ for _ in ()).throw(AssertionError("second model loaded")))
    cfg = pref_config(tiny_model_dir, tmp_path, "dpo", {"name": "full"}, max_steps=3, lr=1e-3)
    sink = ListSink()
    assert train(cfg, sinks=[sink]).status == "finished"
    assert all(math.isfinite(s["loss"]) for s in sink.of("step"))


def test_dpo_stop_and_resume_continue_exactly(tiny_model_dir, tmp_path):
    (tmp_path / "a").mkdir()
    full_sink = ListSink()
    assert train(pref_config(tiny_model_dir, tmp_path / "a", "dpo", max_steps=8), sinks=[full_sink]).status \
        == "finished"
    full = {e["step"]: e["loss"] for e in full_sink.of("step")}

    (tmp_path / "b").mkdir()
    cfg = pref_config(tiny_model_dir, tmp_path / "b", "dpo", max_steps=8)
    stop = StopFlag()
    first = train(cfg, sinks=[CallbackSink(lambda ev: ev["event"] == "step" and ev["step"] >= 4 and stop.set())],
                  stop=stop)
    assert first.status == "stopped"
    cfg.train.resume_from = "latest"
    resumed_sink = ListSink()
    assert train(cfg, sinks=[resumed_sink]).status == "finished"
    resumed = {e["step"]: e["loss"] for e in resumed_sink.of("step")}
    assert min(resumed) > 4 and max(resumed) == 8
    for step, loss in resumed.items():
        assert loss == pytest.approx(full[step], rel=1e-5, abs=1e-6), step


# ---- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("task,method,field,words", [
    ("orpo", {"name": "prompt_tuning"}, "method.name", "virtual tokens"),
    ("simpo", {"name": "prefix_tuning"}, "method.name", "virtual tokens"),
    ("dpo", {"name": "lora", "modules_to_save": ["lm_head"]}, "method.target_modules", "output head"),
    ("dpo", {"name": "lora"}, "train.distributed.strategy", "FSDP"),
])
def test_methods_that_cannot_serve_are_refused_before_weights_load(task, method, field, words, tiny_model_dir,
                                                                     tmp_path, monkeypatch):
    from engine.training import run as run_mod

    monkeypatch.setattr(run_mod, "build_for_training",
                        lambda *a, **kw: (_ for _ in ()).throw(AssertionError("weights loaded")))
    cfg = pref_config(tiny_model_dir, tmp_path, task, method)
    if field == "train.distributed.strategy":
        cfg.train.distributed.strategy = "fsdp"
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "failed" and result.user_error
    assert result.error.startswith(field) and words in result.error
    assert not Path(cfg.output_dir).exists()


def test_unpaired_data_for_dpo_is_refused_naming_the_task(tiny_model_dir, tmp_path):
    cfg = pref_config(tiny_model_dir, tmp_path, "dpo")
    cfg.data.path = _write(tmp_path / "kto.jsonl", [{"prompt": "a", "completion": "b", "label": True}] * 4)
    result = train(cfg)
    assert result.status == "failed" and result.user_error and "train.task: kto" in (result.error + (result.hint or ""))


# ---- the estimate ---------------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"


def _estimate(task: str, **pref):
    from engine.estimate import estimate

    cfg = RunConfig.from_dict({"model": {"name_or_path": str(CONFIGS / "llama-3-8b")}, "method": {"name": "lora"},
                               "train": {"task": task, "batch_size": 2, "packing": False,
                                         "preference": pref},
                               "data": {"max_length": 1024}})
    return estimate(cfg, "80GB")


def test_estimate_shows_the_preference_tasks_extra_cost():
    sft, dpo = _estimate("sft"), _estimate("dpo")
    c = dpo.components
    # Chosen and rejected in one batch: twice the sequences' activations; plus the reference forward.
    assert dpo.sizes["activations"] == pytest.approx(2 * sft.sizes["activations"], rel=0.05)
    assert dpo.peak_phase == "loss" and c["reference_forward"] > 0
    assert sft.components["reference_forward"] == 0
    allocated = sum(c[k] for k in ("frozen_weights", "trainable_params", "gradients", "optimizer_states",
                                   "activations", "logits_loss", "reference_forward", "transient"))
    assert allocated == dpo.peak_allocated
    assert c["frozen_weights"] == sft.components["frozen_weights"], "no second copy of the weights"
    assert any("2 sequences per example" in n and "adapter disabled" in n for n in dpo.notes)
    # Reference-free (ORPO, SimPO) and precomputed references have no reference forward.
    assert _estimate("orpo").components["reference_forward"] == 0
    assert _estimate("dpo", precompute_ref_log_probs=True).components["reference_forward"] == 0

    from engine.estimate.memory import LABELS

    assert LABELS["reference_forward"].startswith("Reference forward")


def test_data_verb_reports_preference_data(tiny_model_dir, tmp_path, capsys):
    from engine.cli import main

    cfg = pref_config(tiny_model_dir, tmp_path, "dpo")
    cfg.save(tmp_path / "run.yaml")
    assert main(["data", str(tmp_path / "run.yaml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "DPO data" in out and "pairs for training" in out and "identical chosen and rejected answers: 0.0%" in out
    assert "length balance" in out
    assert main(["data", str(tmp_path / "run.yaml"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["shape"] == "prompt_chosen_rejected" and rep["pairs"] + rep["eval"] == 48 and rep["identical"] == 0


def test_demo_metric_preference_accuracy_moves_with_dpo(tiny_model_dir, tmp_path):
    """engine.demo.preference_accuracy (the preference demo's metric): held-out pairs of the same
    kind as the training pairs are preferred more often after DPO than before."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.demo import preference_accuracy

    cfg = pref_config(tiny_model_dir, tmp_path, "dpo", max_steps=12)
    result = train(cfg)
    assert result.status == "finished", result.error
    held = [{"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} is {a + b}.", "rejected": "I cannot say."}
            for a, b in ((8, 9), (9, 8), (11, 2), (12, 6), (10, 10), (13, 1))]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    before = preference_accuracy(base, tok, held)
    after = preference_accuracy(PeftModel.from_pretrained(base, result.adapter_dir), tok, held)
    assert 0.0 <= before < after <= 1.0, (before, after)


def test_compare_methods_with_a_preference_task(tiny_model_dir, tmp_path):
    """compare-methods trains every method with the run file's train.task (here DPO) and tables
    its losses, as for SFT."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    data = write_pairs(tmp_path / "pairs.jsonl", 24)
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {{name_or_path: {tiny_model_dir}}}\ndata: {{path: {data}, max_length: 48}}\n"
                   "train: {task: dpo, max_steps: 2, batch_size: 4, lr: 5.0e-3}\n", encoding="utf-8")
    env = {**os.environ, "PEFT_STUDIO_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-m", "engine", "compare-methods", str(run), "--methods", "lora,ia3",
                           "--out", str(tmp_path / "cmp"), "--doc", str(tmp_path / "methods.md")],
                          capture_output=True, text=True, cwd=repo, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["lora", "ia3"]
    for name in ("lora", "ia3"):
        run_yaml = RunConfig.load(tmp_path / "cmp" / name / "run.yaml")
        assert run_yaml.train.task == "dpo"
        assert (tmp_path / "cmp" / name / "adapter" / "adapter_config.json").exists()
