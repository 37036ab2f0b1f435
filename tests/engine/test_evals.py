"""Evaluation that runs by itself (issue 16), on the tiny model: samples at every evaluation,
early stopping and the best state, the divergence guard, the forgetting check (in the run and
afterwards), trackers, runs compare, importing a plain Trainer run, lm-eval base vs tuned.

The runs are shared between assertions (module fixtures): each costs seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import ListSink, read_events
from engine.training import train


def _chat(a: int, b: int, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                         {"role": "assistant", "content": answer}]}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def base_config(model_dir, root: Path, name: str, **train) -> RunConfig:
    cfg = RunConfig()
    cfg.model.name_or_path = str(model_dir)
    cfg.data.path = str(write_rows(root / f"{name}-train.jsonl",
                                   [_chat(i % 7, (3 * i) % 5, f"Ahoy! {i % 7} plus {(3 * i) % 5} be "
                                                              f"{i % 7 + (3 * i) % 5}, arr.") for i in range(40)]))
    cfg.data.max_length = 64
    cfg.data.validation_split = 0.0
    cfg.method.target_modules = "auto"
    cfg.method.dropout = 0.0
    cfg.train.batch_size = 4
    cfg.train.lr = 5e-3
    cfg.eval.forgetting = False
    cfg.eval.samples = 0
    cfg.output_dir = str(root / name)
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


# ---- metrics --------------------------------------------------------------------------------------

def test_exact_match_and_token_f1_follow_squad():
    from engine.evals.metrics import exact_match, token_f1

    assert exact_match("The Paris.", "paris") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(2 * (2 / 2) * (2 / 3) / (2 / 2 + 2 / 3))
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_user_metric_expression_module_and_errors():
    from engine.errors import ConfigError
    from engine.evals.metrics import load_metric, score

    m = load_metric("engine.data.demo:persona_score")
    assert m.name == "persona_score" and m("Ahoy! fine ⚓", "") == 1.0
    e = load_metric("float('ahoy' in answer.lower())")
    assert e.name == "metric" and e("AHOY there", "") == 1.0
    s = score([{"prompt": "p", "reference": "Ahoy ⚓", "answer": "Ahoy ⚓"},
               {"prompt": "q", "reference": "", "answer": "plain"}], m)
    assert s == {"exact_match": 1.0, "token_f1": 1.0, "persona_score": 0.5}
    for bad, words in (("no.such.module:fn", "cannot import"), ("engine.data.demo:nothing", "has no function"),
                       ("answer ==", "valid Python expression")):
        with pytest.raises(ConfigError, match=words) as info:
            load_metric(bad)
        assert info.value.path == "eval.metric"
    with pytest.raises(ConfigError, match="eval.metric"):
        load_metric("1 / 0")("a", "b")


def test_eval_prompts_file_and_list(tmp_path):
    from engine.config import EvalConfig
    from engine.errors import ConfigError
    from engine.evals.samples import sample_prompts

    f = write_rows(tmp_path / "p.jsonl", [{"prompt": "Hi?", "reference": "Hello"},
                                          {"messages": [{"role": "user", "content": "Q"},
                                                        {"role": "assistant", "content": "A"}]}])
    got = sample_prompts(EvalConfig(prompts=str(f), samples=5), None)
    assert got == [{"messages": [{"role": "user", "content": "Hi?"}], "reference": "Hello"},
                   {"messages": [{"role": "user", "content": "Q"}], "reference": "A"}]
    assert len(sample_prompts(EvalConfig(prompts=["a", "b", "c"], samples=2), None)) == 2
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.jsonl line 2"):
        sample_prompts(EvalConfig(prompts=str(tmp_path / "bad.jsonl")), None)


# ---- early stopping, best, samples ----------------------------------------------------------------

@pytest.fixture(scope="module")
def early_run(tiny_model_dir, tmp_path_factory):
    """Trains on pirate answers and evaluates on plain ones: the eval loss rises, so early stopping
    ends the run and best/ holds the first evaluation's weights."""
    root = tmp_path_factory.mktemp("early")
    cfg = base_config(tiny_model_dir, root, "early", lr=3e-2, max_steps=30, eval_steps=2)
    cfg.data.validation_path = str(write_rows(root / "val.jsonl", [
        _chat(i, i + 1, f"Certainly. The total equals {2 * i + 1}.") for i in range(6)]))
    cfg.train.early_stopping.patience = 2
    cfg.eval.samples = 2
    cfg.eval.max_new_tokens = 6
    cfg.eval.metric = "float(len(answer) >= 0)"
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    return cfg, sink, result


def test_early_stopping_stops_a_run_whose_eval_loss_rises(early_run):
    cfg, sink, result = early_run
    evals = sink.of("eval")
    losses = [e["eval_loss"] for e in evals]
    assert result.status == "stopped", result.error
    i = losses.index(min(losses))
    assert len(losses[i + 1:]) == 2 and all(x > losses[i] for x in losses[i + 1:]), losses  # it rose, twice
    stopped = sink.of("stopped")[0]
    assert stopped["reason"].startswith("early stopping: eval_loss did not improve for 2 evaluations")
    assert stopped["step"] < cfg.train.max_steps
    assert stopped["metrics"]["best_metric"] == "eval_loss"
    best_step = stopped["metrics"]["best_step"]
    assert stopped["metrics"]["best_value"] == pytest.approx(min(losses))
    assert best_step == evals[losses.index(min(losses))]["step"]
    best = Path(cfg.output_dir) / "best"
    assert stopped["best_checkpoint"] == str(best)
    assert json.loads((best / "best.json").read_text())["step"] == best_step


def test_every_eval_event_carries_samples_and_their_metrics(early_run):
    cfg, sink, _ = early_run
    for ev in sink.of("eval"):
        assert [s["prompt"] for s in ev["samples"]] == ["What is 0 plus 1?", "What is 1 plus 2?"]
        assert ev["samples"][0]["reference"] == "Certainly. The total equals 1."
        assert all(isinstance(s["answer"], str) for s in ev["samples"])
        assert {"eval_exact_match", "eval_token_f1", "eval_metric"} <= set(ev["metrics"])
        assert ev["metrics"]["eval_metric"] == 1.0
    on_disk = [e for e in read_events(Path(cfg.output_dir) / "events.jsonl") if e["event"] == "eval"]
    assert on_disk[0]["samples"] == sink.of("eval")[0]["samples"]


def test_best_is_offered_and_exported(early_run, tmp_path):
    from safetensors.torch import load_file

    from engine.cli import main
    from engine.export.runinfo import load_run

    cfg, _, _ = early_run
    info = load_run(cfg.output_dir)
    assert "best" in info.choices() and "final" in info.choices()
    assert info.adapter("best") == Path(cfg.output_dir) / "best"
    from engine.playground import Playground

    pg = Playground(cfg.output_dir).load()
    assert pg.sources()[:3] == ["base", "final", "best"]  # the playground offers best beside final
    with pg.use("best"):
        pass
    out = tmp_path / "best-export"
    assert main(["export", cfg.output_dir, "--checkpoint", "best", "--out", str(out)]) == 0
    best = load_file(Path(cfg.output_dir) / "best" / "adapter_model.safetensors")
    exported = load_file(out / "adapter_model.safetensors")
    final = load_file(Path(cfg.output_dir) / "adapter" / "adapter_model.safetensors")
    assert best.keys() == exported.keys()
    assert all((best[k] == exported[k]).all() for k in best)
    assert any(not (best[k] == final[k]).all() for k in best), "best is an earlier state than final"


# ---- the divergence guard ---------------------------------------------------------------------------

def test_divergence_guard_stops_lr_10_and_keeps_the_last_good_state(tiny_model_dir, tmp_path):
    """lr 10 blows a full fine-tune of the tiny model up at once (loss 5.8 → ~2000). A LoRA run of
    the tiny model cannot diverge by its loss (frozen small head after a norm: the logits stay
    bounded); the demo-model test below shows LoRA at lr 10."""
    import torch
    from safetensors.torch import load_file

    cfg = base_config(tiny_model_dir, tmp_path, "diverge", lr=10.0, max_steps=40).with_overrides(
        ["method.name=full"])
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "stopped"
    stopped = sink.of("stopped")[0]
    assert stopped["reason"].startswith("diverged: the loss stayed above 4 × its running minimum"), stopped["reason"]
    assert stopped["step"] <= 5
    assert "lower train.lr (now 10; try 1)" in stopped["hint"] and "train.warmup_ratio" in stopped["hint"]
    assert "The adapter holds the last good weights (step 0)" in stopped["hint"]
    assert len(sink.of("step")) == stopped["step"] <= 5
    saved = load_file(Path(cfg.output_dir) / "adapter" / "model.safetensors")
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())
    assert all(torch.equal(saved[k], base[k]) for k in base), "the last good state (step 0) was saved"
    assert not list((Path(cfg.output_dir) / "checkpoints").glob("checkpoint-*"))


@pytest.mark.slow
def test_divergence_guard_stops_a_demo_lora_run_at_lr_10(tmp_path):
    """The demo model with LoRA at lr 10: loss 4.8 → 28 → 30 → 35 (measured); the guard stops it
    after three steps above 4 × the running minimum and keeps the step-0 adapter."""
    import torch
    from safetensors.torch import load_file

    from engine.demo import demo_config

    cfg = demo_config(steps=20, out=str(tmp_path / "demo-lr10"))
    cfg.train.lr, cfg.train.warmup_ratio = 10.0, 0.0
    cfg.data.validation_split = 0.0
    cfg.eval.forgetting = False
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    stopped = sink.of("stopped")[0]
    assert result.status == "stopped" and stopped["reason"].startswith("diverged:") and stopped["step"] <= 6
    assert "train.lr (now 10; try 1)" in stopped["hint"]
    tensors = load_file(Path(cfg.output_dir) / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert all(float(t.abs().max()) == 0.0 for k, t in tensors.items() if "lora_B" in k)  # the step-0 adapter


# ---- forgetting, trackers, eval afterwards ---------------------------------------------------------

@pytest.fixture(scope="module")
def tracked_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    cfg = base_config(tiny_model_dir, root, "tracked", max_steps=6, eval_steps=3)
    cfg.data.validation_split = 0.1
    cfg.train.report_to = ["tensorboard", "mlflow"]
    cfg.eval.forgetting = True
    cfg.eval.forgetting_passages = 8
    cfg.eval.forgetting_prompts = 4
    cfg.eval.forgetting_max_new_tokens = 6
    cfg.eval.samples, cfg.eval.max_new_tokens = 2, 4
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    return cfg, sink, result


def test_finished_event_carries_the_forgetting_check(tracked_run):
    cfg, sink, result = tracked_run
    f = sink.of("finished")[0]["forgetting"]
    assert set(f) >= {"general_nll_base", "general_nll_tuned", "changed_answers", "n_prompts"}
    assert f["n_prompts"] == 4 and f["n_passages"] == 8 and 0 <= f["changed_answers"] <= 4
    assert f["general_nll_base"] > 0 and f["general_nll_tuned"] > 0
    assert f["general_nll_tuned"] != f["general_nll_base"]
    assert f["nll_change_pct"] == pytest.approx(100 * (f["general_nll_tuned"] / f["general_nll_base"] - 1))
    from engine.evals import describe_forgetting
    from engine.runs import RunIndex

    text = describe_forgetting(f)
    assert text.startswith("general-text NLL ") and text.endswith(f"answers changed on {f['changed_answers']} "
                                                                  "of 4 general prompts")
    row = next(r for r in RunIndex().list() if r["run_dir"] == str(Path(cfg.output_dir).resolve()))
    assert row["forgetting"] == f
    from engine.export.runinfo import load_run
    from engine.modelcard import render_run_card

    card = render_run_card(load_run(cfg.output_dir))  # the model card says it too
    assert f"- forgetting check: {text} (PEFT Studio's bundled general reference" in card


def test_eval_verb_measures_a_run_afterwards_with_the_cached_base(tracked_run, capsys):
    from engine.cli import main

    cfg, sink, _ = tracked_run
    assert main(["eval", cfg.output_dir, "--passages", "8", "--prompts", "4", "--max-new-tokens", "6",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["base_cached"] is True
    trained = sink.of("finished")[0]["forgetting"]
    assert out["forgetting"]["general_nll_tuned"] == pytest.approx(trained["general_nll_tuned"], rel=1e-4)
    assert out["forgetting"]["changed_answers"] == trained["changed_answers"]
    assert json.loads((Path(cfg.output_dir) / "forgetting.json").read_text())["forgetting"] == out["forgetting"]
    # a bare adapter folder works too, and prints the sentence
    assert main(["eval", str(Path(cfg.output_dir) / "adapter"), "--passages", "8", "--prompts", "4",
                 "--max-new-tokens", "6"]) == 0
    assert "answers changed on" in capsys.readouterr().out
    # a merged model folder, with its base named
    merged = Path(cfg.output_dir).parent / "merged"
    assert main(["export", cfg.output_dir, "--merge", "--dtype", "float32", "--out", str(merged)]) == 0
    capsys.readouterr()
    assert main(["eval", str(merged), "--base", cfg.model.name_or_path, "--passages", "8", "--prompts", "4",
                 "--max-new-tokens", "6", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["which"] == "model" and got["base_cached"] is True
    assert got["forgetting"]["general_nll_tuned"] == pytest.approx(trained["general_nll_tuned"], rel=1e-3)


def test_eval_verb_names_what_is_missing(tmp_path, capsys):
    from engine.cli import main

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert main(["eval", str(tmp_path)]) == 2
    assert "--base" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nowhere")]) == 2


def test_tensorboard_event_files_are_readable_by_tensorboard(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, sink, _ = tracked_run
    tb = Path(cfg.output_dir) / "tensorboard"
    files = list(tb.rglob("events.out.tfevents.*"))
    assert files, f"no event files under {tb}"
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "eval/loss", "eval/token_f1"} <= set(scalars), scalars
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert losses == pytest.approx([s["loss"] for s in sink.of("step")], rel=1e-5)


def test_mlflow_local_store_receives_params_and_metrics(tracked_run):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg, sink, _ = tracked_run
    client = MlflowClient(tracking_uri=(Path(cfg.output_dir) / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("peft-studio")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    data = runs[0].data
    assert float(data.params["learning_rate"]) == cfg.train.lr
    assert data.metrics["loss"] == pytest.approx(sink.of("step")[-1]["loss"], rel=1e-5)
    assert "eval_loss" in data.metrics


def test_runs_compare_prints_the_differing_fields(tracked_run, early_run, capsys):
    from engine.cli import main

    a, b = tracked_run[0].output_dir, early_run[0].output_dir
    assert main(["runs", "compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "settings that differ" in out
    for key in ("train.lr", "train.report_to", "train.early_stopping.patience", "eval.forgetting"):
        assert any(line.startswith(key + " ") for line in out.splitlines()), key
    assert "train.batch_size" not in out  # the same in both
    for label in ("final train loss", "final eval loss", "best", "general NLL change %", "general answers changed"):
        assert label in out
    assert main(["runs", "compare", a]) == 2


# ---- importing a plain Trainer run -------------------------------------------------------------------

def test_a_plain_transformers_trainer_run_is_imported_with_its_curves(tiny_model_dir, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from engine.cli import main
    from engine.runs import RunIndex

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok("Ahoy! two plus two be four, arr.")["input_ids"]
    rows = [{"input_ids": torch.tensor(ids), "labels": torch.tensor(ids)} for _ in range(16)]
    out = tmp_path / "plain"
    args = TrainingArguments(output_dir=str(out), max_steps=4, per_device_train_batch_size=4, logging_steps=1,
                             eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=4,
                             report_to="none", use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:4])
    trainer.train()
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    capsys.readouterr()  # the plain Trainer prints its logs
    assert main(["runs", "import", str(out), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["status"] == "imported" and row["imported"] and row["steps"] == 4 and row["method"] == "full"
    events = read_events(Path(row["run_dir"]) / "events.jsonl")
    assert events[0]["event"] == "started" and events[0]["imported"] is True
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert losses == [h["loss"] for h in state["log_history"] if "loss" in h]
    assert [e["step"] for e in events if e["event"] == "eval"] == [2, 4]
    assert events[-1]["event"] == "finished"
    assert any(r["run_dir"] == row["run_dir"] for r in RunIndex().list())
    assert not (out / "events.jsonl").exists(), "the imported folder is never written to"
    assert main(["runs", "import", str(tmp_path / "empty")]) == 2


# ---- lm-evaluation-harness -----------------------------------------------------------------------

TOY_TASK = """task: toy_pirate
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
"""


def test_lm_eval_on_a_local_toy_task_base_vs_tuned(tracked_run, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    from engine.cli import main

    cfg, _, _ = tracked_run
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = write_rows(tmp_path / "toy.jsonl", [
        {"question": f"What is {a} plus {b}?", "choices": [f"Ahoy! {a} plus {b} be {a + b}, arr.", "Hello there."],
         "label": 0} for a, b in ((1, 2), (3, 1), (2, 2), (4, 0))])
    (tasks / "toy_pirate.yaml").write_text(TOY_TASK.format(data=data), encoding="utf-8")
    assert main(["bench", cfg.output_dir, "--tasks", "toy_pirate", "--include-path", str(tasks), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for side in ("base", "tuned"):
        assert 0.0 <= out[side]["toy_pirate"]["acc"] <= 1.0
    assert json.loads((Path(cfg.output_dir) / "bench.json").read_text())["tuned"] == out["tuned"]
    assert main(["bench", cfg.output_dir, "--tasks", "no_such_task", "--include-path", str(tasks)]) == 2
    assert "unknown lm-eval task" in capsys.readouterr().err


def test_divergence_guard_restores_the_weights_the_last_sound_loss_vouched_for():
    """The loss logged at step t is computed with step t-1's weights: a NaN loss at step 3 condemns
    w2 and restores w1; a NaN gradient norm with a sound loss at step 3 condemns only the update, so
    w2 comes back."""
    import torch
    from transformers import TrainerControl, TrainerState

    from engine.training.watch import divergence_guard

    for bad, expected in (({"loss": float("nan"), "grad_norm": 1.0}, 1.0),
                          ({"loss": 1.0, "grad_norm": float("inf")}, 2.0),
                          ({"loss": 100.0, "grad_norm": 1.0}, None)):
        model = torch.nn.Linear(2, 2)
        guard = divergence_guard(factor=4, steps=2 if expected is None else 3)
        state, control = TrainerState(), TrainerControl()
        guard.on_train_begin(None, state, control, model=model)
        for step in (1, 2, 3, 4):
            with torch.no_grad():
                model.weight.fill_(float(step))   # the weights after this step's update
            state.global_step = step
            logs = bad if step == 3 else {"loss": 1.0, "grad_norm": 1.0}
            if expected is None and step == 4:
                logs = bad
            guard.on_log(None, state, control, logs=logs, model=model)
            if guard.tripped:
                break
        assert control.should_training_stop and not control.should_save
        if expected is None:  # high losses at steps 3 and 4 (computed with w2, w3): w1 was the last vouched for
            assert guard.tripped["restored_step"] == 1 and float(model.weight[0, 0].detach()) == 1.0
            assert "stayed above 4 × its running minimum" in guard.tripped["reason"]
        else:
            assert float(model.weight[0, 0].detach()) == expected and guard.tripped["step"] == 3


def test_an_older_run_index_gains_the_new_columns(tmp_path):
    import sqlite3

    from engine.runs import SCHEMA, RunIndex

    db = tmp_path / "runs.sqlite"
    with sqlite3.connect(db) as con:
        con.execute(SCHEMA)
        con.execute("INSERT INTO runs (run_dir, name, status, updated) VALUES (?, ?, ?, ?)",
                    (str(tmp_path), "old", "finished", 1.0))
    rows = RunIndex(db).list()
    assert rows[0]["name"] == "old" and rows[0]["forgetting"] is None and rows[0]["imported"] is False
    with sqlite3.connect(db) as con:
        cols = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    assert {"forgetting", "best_metric", "best_value", "best_step", "imported"} <= cols
