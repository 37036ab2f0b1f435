"""A run that continues a saved adapter (method.from_adapter): SFT first, then SFT or DPO on top.

The adapter a run starts from is exactly the one saved (its weights, its method settings, run.yaml
says so); DPO's reference is then the starting policy, so the first step's loss is ln 2 with
zero rewards; a missing folder, a folder without an adapter, another base model, another method
and a changed adapter on resume are refused before any weights load, naming the field.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from engine.config import ConfigError, RunConfig
from engine.events import CallbackSink, ListSink
from engine.training import StopFlag, train
from tests.engine.test_preference import write_pairs


def _write_chat(path: Path, n: int = 40) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
                          {"role": "assistant", "content": f"It is {i % 7 + i % 5}."}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sft_config(model_dir, tmp_path: Path, out: str, train: dict | None = None, **method) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(_write_chat(tmp_path / "chat.jsonl")), "max_length": 64, "validation_split": 0.2},
        "method": {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
                   **method},
        "train": {"max_steps": 6, "batch_size": 4, "lr": 5e-3, "seed": 0, "save_steps": 3, **(train or {})},
        "eval": {"samples": 0, "forgetting": False},
        "output_dir": str(tmp_path / out),
    })


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, tmp_path_factory):
    """Run A: 6 SFT steps of LoRA r=4 on q/v, a checkpoint at 3 and 6."""
    tmp = tmp_path_factory.mktemp("sft")
    result = train(sft_config(tiny_model_dir, tmp, "a"))
    assert result.status == "finished", result.error
    return result


def _peft_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def test_a_run_starts_from_the_saved_adapter_with_its_settings(sft_run, tiny_model_dir, tmp_path, monkeypatch):
    """B's adapter at step 0 is A's saved adapter, tensor for tensor, trainable; B's method settings
    are A's (run.yaml says so), whatever B's run file said."""
    import torch
    from safetensors.torch import load_file

    from engine.training import run as run_mod

    seen = {}

    def stop_before_fit(p, *a, **kw):
        seen["state"] = _peft_state(p.built.model)
        seen["trainable"] = sum(x.numel() for x in p.built.model.parameters() if x.requires_grad)
        seen["cfg"] = p.cfg
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "fit", stop_before_fit)
    cfg = sft_config(tiny_model_dir, tmp_path, "b", r=16, target_modules="all-linear")
    cfg.method.from_adapter = str(sft_run.run_dir)      # a run folder: its final adapter
    train(cfg)
    saved = load_file(str(sft_run.adapter_dir / "adapter_model.safetensors"))
    assert seen["state"].keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(seen["state"][k], v), k
    assert seen["trainable"] == sum(v.numel() for v in saved.values())
    m = seen["cfg"].method
    assert (m.name, m.r, m.alpha, sorted(m.target_modules)) == ("lora", 4, 8.0, ["q_proj", "v_proj"])
    assert m.from_adapter == str(sft_run.adapter_dir.resolve())


def test_continuing_with_lr_zero_keeps_the_runs_eval_loss_and_records_where_it_came_from(
        sft_run, tiny_model_dir, tmp_path):
    """B continues A: with a learning rate of 0 its weights stay A's, so on the same held-out data its
    eval loss is A's final one. The saved adapter loads with plain PeftModel.from_pretrained."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = sft_config(tiny_model_dir, tmp_path, "b", {"save_steps": 0})
    cfg.train.lr = 0.0
    cfg.train.max_steps = 2
    cfg.method.from_adapter = str(sft_run.adapter_dir)   # an adapter folder
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    assert result.metrics["eval_loss"] == pytest.approx(sft_run.metrics["eval_loss"], rel=1e-5)
    assert any("Continuing the adapter" in e["message"] for e in sink.of("log"))
    saved = RunConfig.load(result.run_dir / "run.yaml")
    assert saved.method.from_adapter == str(sft_run.adapter_dir.resolve())
    assert sink.of("started")[0]["config"]["method"]["from_adapter"] == saved.method.from_adapter
    assert not (result.adapter_dir / "ref").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), result.adapter_dir)
    assert model.peft_config["default"].r == 4
    from engine.export.runinfo import load_run
    from engine.modelcard import render_run_card

    card = render_run_card(load_run(result.run_dir))
    assert f"Training continued the adapter `{sft_run.adapter_dir.resolve()}`" in card
    assert "reference model" not in card


def test_dpo_from_an_adapter_uses_the_starting_policy_as_its_reference(sft_run, tiny_model_dir, tmp_path,
                                                                        monkeypatch):
    """TRL's `ref` copy is kept: at the first step the reference log-probs are the policy's, so the
    sigmoid loss is ln 2 and the rewards are 0. A base reference would not give that: the SFT
    adapter's log-probs differ from the base's (a fresh run's first step)."""
    from engine.training import run as run_mod

    seen = {}
    real = run_mod.make_preference_trainer

    def spy(p, *a, **kw):
        trainer = real(p, *a, **kw)
        model = p.built.model
        seen["adapters"] = sorted(model.peft_config)
        seen["ref_trainable"] = [n for n, x in model.named_parameters() if ".ref." in n and x.requires_grad]
        return trainer

    monkeypatch.setattr(run_mod, "make_preference_trainer", spy)

    def dpo(out: str, start: str | None) -> ListSink:
        cfg = RunConfig.from_dict({
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"path": str(write_pairs(tmp_path / "pairs.jsonl")), "max_length": 64, "validation_split": 0},
            "method": {"name": "lora", "dropout": 0.0, "from_adapter": start},
            "train": {"task": "dpo", "max_steps": 3, "batch_size": 4, "lr": 5e-3, "seed": 0, "logging_steps": 1},
            "eval": {"forgetting": False},
            "output_dir": str(tmp_path / out)})
        sink = ListSink()
        result = train(cfg, sinks=[sink])
        assert result.status == "finished", result.error
        assert not (result.adapter_dir / "ref").exists(), "only the trained adapter is saved"
        return sink

    continued = dpo("dpo-from-a", str(sft_run.run_dir))
    assert seen["adapters"] == ["default", "ref"] and seen["ref_trainable"] == []
    first = continued.of("step")[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert first["metrics"][key] == pytest.approx(0.0, abs=1e-5), key
    assert any("starting policy" in e["message"] for e in continued.of("log"))
    from engine.export.runinfo import load_run
    from engine.modelcard import render_run_card

    assert "DPO's reference model was that starting adapter" in render_run_card(load_run(tmp_path / "dpo-from-a"))

    fresh = dpo("dpo-from-base", None)
    assert seen["adapters"] == ["default"]
    policy = first["metrics"]["logps/chosen"]
    base = fresh.of("step")[0]["metrics"]["logps/chosen"]
    assert abs(policy - base) > 1e-3, "the SFT adapter must change the answers' log-probs for this test to mean much"


# ---- refusals ---------------------------------------------------------------------------------

def _refused(cfg: RunConfig) -> tuple[str, str]:
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "failed" and result.user_error, result.error
    failed = sink.of("failed")[0]
    assert "traceback" not in failed
    assert not Path(cfg.output_dir).exists(), "refused before the run folder is made"
    return failed.get("field"), failed["error"]


def test_a_missing_folder_is_refused(tiny_model_dir, tmp_path):
    cfg = sft_config(tiny_model_dir, tmp_path, "b", from_adapter=str(tmp_path / "nowhere"))
    field, error = _refused(cfg)
    assert field == "method.from_adapter" and "does not exist" in error and "nowhere" in error


def test_a_folder_without_an_adapter_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    field, error = _refused(sft_config(tiny_model_dir, tmp_path, "b", from_adapter=str(tmp_path / "empty")))
    assert field == "method.from_adapter" and "adapter_config.json" in error


def test_an_adapter_of_another_base_model_is_refused_naming_both(sft_run, tiny_model_dir, tmp_path):
    from engine.testing import make_tiny_model

    other = make_tiny_model(tmp_path / "wider", hidden_size=96)
    field, error = _refused(sft_config(other, tmp_path, "b", from_adapter=str(sft_run.run_dir)))
    assert field == "method.from_adapter"
    assert str(tiny_model_dir) in error and str(other) in error and "hidden_size" in error


def test_a_copy_of_the_same_model_elsewhere_fits(sft_run, tiny_model_dir, tmp_path):
    """Lenient where two names mean the same model: another folder with the same architecture."""
    import shutil

    from engine.training.from_adapter import adopt

    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    cfg, start, notes = adopt(sft_config(copy, tmp_path, "b", from_adapter=str(sft_run.run_dir)))
    assert start.path == sft_run.adapter_dir and cfg.method.r == 4


def test_another_method_is_refused_naming_both(sft_run, tiny_model_dir, tmp_path):
    cfg = sft_config(tiny_model_dir, tmp_path, "b")
    cfg = cfg.with_overrides(["method.name=ia3", f"method.from_adapter={sft_run.run_dir}"])
    field, error = _refused(cfg)
    assert field == "method.name" and "ia3" in error and "LoRA" in error and "method.name: lora" in error


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="qlora needs bitsandbytes")
def test_qlora_continues_a_lora_adapter_on_a_4bit_base(sft_run, tiny_model_dir, tmp_path):
    from engine.methods import get_method

    assert get_method("qlora").quantizes == "lora" and get_method("dora").quantizes is None
    cfg = sft_config(tiny_model_dir, tmp_path, "b", {"max_steps": 2, "save_steps": 0}).with_overrides(
        ["method.name=qlora", f"method.from_adapter={sft_run.run_dir}"])
    result = train(cfg)
    assert result.status == "finished", result.error
    saved = RunConfig.load(result.run_dir / "run.yaml").method
    assert (saved.name, saved.r, saved.from_adapter) == ("qlora", 4, str(sft_run.adapter_dir.resolve()))


def test_resume_refuses_another_starting_adapter(sft_run, tiny_model_dir, tmp_path):
    cfg = sft_config(tiny_model_dir, tmp_path, "b", {"save_steps": 2}, from_adapter=str(sft_run.run_dir))
    stop = StopFlag()
    first = train(cfg, sinks=[CallbackSink(lambda ev: ev["event"] == "step" and ev["step"] >= 2 and stop.set())],
                  stop=stop)
    assert first.status == "stopped", first.error
    before = (first.run_dir / "run.yaml").read_bytes()
    cfg.train.resume_from = "latest"
    cfg.method.from_adapter = str(sft_run.run_dir / "checkpoints" / "checkpoint-3")
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "failed" and result.user_error
    failed = sink.of("failed")[0]
    assert failed["field"] == "method.from_adapter" and "checkpoint-3" in failed["error"]
    assert (first.run_dir / "run.yaml").read_bytes() == before
    # The same starting adapter resumes.
    cfg.method.from_adapter = str(sft_run.run_dir)
    assert train(cfg).status == "finished"


def test_the_field_is_typed_documented_and_resolved_from_the_run_files_folder(tmp_path):
    from engine.fields import field_help
    from engine.methods import PARAMS

    for klass in PARAMS.values():
        assert "from_adapter" in klass.__dataclass_fields__
    assert "run folder" in field_help(PARAMS["lora"], "from_adapter")
    run_file = tmp_path / "sub" / "run.yaml"
    run_file.parent.mkdir()
    run_file.write_text("method: {name: lora, from_adapter: ../runs/sft}\n")
    cfg = RunConfig.load(run_file)
    assert cfg.method.from_adapter == str(tmp_path / "sub" / ".." / "runs" / "sft")
    # TRL's way of naming the reference adapter points here.
    with pytest.raises(ConfigError, match=r"train\.preference\.ref_adapter_name: .*method\.from_adapter"):
        RunConfig.from_dict({"train": {"preference": {"ref_adapter_name": "sft"}}})
    # Switching the method keeps the adapter the run continues (the check then names both).
    assert cfg.with_overrides(["method.name=dora"]).method.from_adapter == cfg.method.from_adapter


# ---- the estimate -----------------------------------------------------------------------------

def test_the_estimate_counts_the_adapter_it_continues_and_dpos_reference_copy(sft_run, tiny_model_dir, tmp_path):
    """The loaded adapter's parameters train like a fresh one's (A's r=4 on q/v, not the run file's r=16
    on every linear layer); DPO from it adds the frozen reference copy's bytes, and nothing else."""
    from safetensors.torch import load_file

    from engine.estimate import count_params, estimate

    saved = load_file(str(sft_run.adapter_dir / "adapter_model.safetensors"))
    n_saved = sum(v.numel() for v in saved.values())

    def cfg(task: str, start: str | None) -> RunConfig:
        c = sft_config(tiny_model_dir, tmp_path, "b", {"task": task}, r=16, target_modules="all-linear",
                       from_adapter=start)
        c.train.packing = False
        return c

    assert count_params(cfg("sft", str(sft_run.run_dir)))["trainable_params"] == n_saved
    assert count_params(cfg("sft", None))["trainable_params"] != n_saved
    fresh = estimate(cfg("dpo", None).with_overrides(["method.r=4", "method.alpha=8",
                                                      "method.target_modules=[q_proj, v_proj]"]), "80GB")
    cont = estimate(cfg("dpo", str(sft_run.run_dir)), "80GB")
    assert cont.trainable_params == fresh.trainable_params == n_saved
    ref_copy = cont.components["trainable_params"]
    assert ref_copy > 0
    assert cont.components["frozen_weights"] == fresh.components["frozen_weights"] + ref_copy
    assert any("frozen copy of the starting adapter" in n for n in cont.notes)
    # SFT from an adapter, and a reference-free task, keep no copy.
    sft = estimate(cfg("sft", str(sft_run.run_dir)), "80GB")
    orpo = estimate(cfg("orpo", str(sft_run.run_dir)), "80GB")
    assert sft.components["frozen_weights"] == orpo.components["frozen_weights"] \
        == fresh.components["frozen_weights"]


# ---- the demo ---------------------------------------------------------------------------------

def test_demo_from_adapter_is_checked_before_the_demo_model_is_touched(tmp_path, capsys, monkeypatch):
    """`peft-studio demo --task dpo --from-adapter PATH`: a wrong PATH is a plain error (exit 2) before
    the demo model is fetched; --from-adapter needs a preference task."""
    import engine.demo as demo_mod
    from engine.cli import main

    monkeypatch.setattr(demo_mod, "demo_model_dir", lambda *a, **kw: pytest.fail("the demo model was touched"))
    assert main(["demo", "--task", "dpo", "--from-adapter", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "method.from_adapter" in err and "nowhere" in err and "Traceback" not in err
    assert main(["demo", "--from-adapter", str(tmp_path)]) == 2
    assert "--task dpo" in capsys.readouterr().err


def test_demo_continues_the_adapter_and_measures_from_it(sft_run, tiny_model_dir, tmp_path, monkeypatch):
    """The preference demo with --from-adapter trains DPO on top of the adapter (the run's
    method.from_adapter) and scores "before" with that adapter, not the bare base."""
    import engine.demo as demo_mod

    monkeypatch.setattr(demo_mod, "demo_model_dir", lambda *a, **kw: tiny_model_dir)
    monkeypatch.setattr(demo_mod, "load_tokenizer", lambda name: __import__("transformers").AutoTokenizer
                        .from_pretrained(tiny_model_dir))
    real_config = demo_mod.preference_config

    def tiny_config(task, steps, out):
        cfg = real_config(task, steps, out)
        cfg.model.name_or_path = str(tiny_model_dir)
        cfg.data.path = str(write_pairs(tmp_path / "pairs.jsonl"))
        cfg.method.target_modules = "auto"
        cfg.eval.forgetting = False
        cfg.eval.metric = None
        return cfg

    monkeypatch.setattr(demo_mod, "preference_config", tiny_config)
    pairs = [{"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} is {a + b}.", "rejected": "I cannot say."}
             for a, b in ((8, 9), (9, 8), (11, 2))]
    monkeypatch.setattr(demo_mod, "load_preference_heldout", lambda: pairs)
    import io

    out = io.StringIO()
    demo_mod.run_preference_demo("dpo", steps=2, out=str(tmp_path / "demo-dpo"), prompts=2, stream=out,
                                 from_adapter=str(sft_run.run_dir))
    text = out.getvalue()
    assert "continuing the adapter" in text and "start vs tuned" in text and "LoRA r=4" in text
    saved = RunConfig.load(tmp_path / "demo-dpo" / "run.yaml")
    assert saved.method.from_adapter == str(sft_run.adapter_dir.resolve()) and saved.train.task == "dpo"


def test_a_prompt_learning_adapter_is_refused_with_peft_s_reason(tiny_model_dir, tmp_path):
    """peft cannot load a prompt-learning adapter trainable; the run says so before weights load."""
    a = train(RunConfig.from_dict({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"path": str(_write_chat(tmp_path / "chat.jsonl")), "max_length": 64, "validation_split": 0},
        "method": {"name": "prompt_tuning", "num_virtual_tokens": 4, "init": "random"},
        "train": {"max_steps": 1, "batch_size": 4}, "eval": {"forgetting": False}, "output_dir": str(tmp_path / "a")}))
    assert a.status == "finished", a.error
    cfg = sft_config(tiny_model_dir, tmp_path, "b").with_overrides(
        ["method.name=prompt_tuning", f"method.from_adapter={tmp_path / 'a'}"])
    field, error = _refused(cfg)
    assert field == "method.from_adapter" and "prompt-learning" in error and "trainable" in error


def test_dpo_from_an_adapter_stops_and_resumes_exactly(sft_run, tiny_model_dir, tmp_path):
    """The checkpoints of a run continuing an adapter hold TRL's `ref` copy too (ref/): a resume
    continues with the same reference, so its losses are the uninterrupted run's."""
    def cfg(out: Path) -> RunConfig:
        out.mkdir()
        return RunConfig.from_dict({
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"path": str(write_pairs(out / "pairs.jsonl")), "max_length": 64, "validation_split": 0},
            "method": {"name": "lora", "dropout": 0.0, "from_adapter": str(sft_run.run_dir)},
            "train": {"task": "dpo", "max_steps": 6, "batch_size": 4, "lr": 5e-3, "seed": 0, "save_steps": 3},
            "eval": {"forgetting": False}, "output_dir": str(out / "run")})

    full_sink = ListSink()
    assert train(cfg(tmp_path / "a"), sinks=[full_sink]).status == "finished"
    full = {e["step"]: e["loss"] for e in full_sink.of("step")}
    c = cfg(tmp_path / "b")
    stop = StopFlag()
    first = train(c, sinks=[CallbackSink(lambda ev: ev["event"] == "step" and ev["step"] >= 3 and stop.set())],
                  stop=stop)
    assert first.status == "stopped"
    assert (first.run_dir / "checkpoints" / "checkpoint-3" / "ref" / "adapter_config.json").exists()
    c.train.resume_from = "latest"
    resumed_sink = ListSink()
    assert train(c, sinks=[resumed_sink]).status == "finished"
    resumed = {e["step"]: e["loss"] for e in resumed_sink.of("step")}
    assert min(resumed) > 3 and max(resumed) == 6
    for step, loss in resumed.items():
        assert loss == pytest.approx(full[step], rel=1e-5, abs=1e-6), step


def test_kto_from_an_adapter_keeps_it_as_the_reference(sft_run, tiny_model_dir, tmp_path, monkeypatch):
    """KTO's trainer makes the same `ref` copy as DPO's: kept, frozen, and the first step's rewards 0."""
    from engine.training import run as run_mod

    seen = {}
    real = run_mod.make_preference_trainer

    def spy(p, *a, **kw):
        trainer = real(p, *a, **kw)
        seen["adapters"] = sorted(p.built.model.peft_config)
        return trainer

    monkeypatch.setattr(run_mod, "make_preference_trainer", spy)
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"path": str(write_pairs(tmp_path / "pairs.jsonl")), "max_length": 64, "validation_split": 0},
        "method": {"name": "lora", "dropout": 0.0, "from_adapter": str(sft_run.run_dir)},
        "train": {"task": "kto", "max_steps": 2, "batch_size": 4, "lr": 5e-3, "seed": 0, "logging_steps": 1},
        "eval": {"forgetting": False}, "output_dir": str(tmp_path / "kto")})
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    assert seen["adapters"] == ["default", "ref"]
    first = sink.of("step")[0]["metrics"]
    rewards = [v for k, v in first.items() if k.startswith("rewards/") and "margin" not in k and v is not None]
    assert rewards and all(v == pytest.approx(0.0, abs=1e-5) for v in rewards), first
