"""End-to-end training on the tiny model: events, artifacts, stop, resume, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import CallbackSink, ListSink, read_events
from engine.training import StopFlag, hint_for, train

REPO = Path(__file__).resolve().parents[2]


def write_chat_data(path: Path, n: int = 48) -> Path:
    rows = []
    for i in range(n):
        a, b = i % 7, (i * 3) % 5
        rows.append({"messages": [
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"Ahoy! {a} plus {b} be {a + b}, arr."},
        ]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def tiny_config(model_dir, tmp_path, **train) -> RunConfig:
    cfg = RunConfig()
    cfg.model.name_or_path = str(model_dir)
    cfg.data.path = str(write_chat_data(tmp_path / "data.jsonl"))
    cfg.data.max_length = 64
    cfg.data.validation_split = 0.1
    cfg.method.target_modules = "auto"
    cfg.method.dropout = 0.0
    cfg.train.lr = 5e-3
    cfg.train.batch_size = 4
    cfg.train.max_steps = 10
    cfg.output_dir = str(tmp_path / "run")
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_lora_run_emits_events_and_saves_a_standard_adapter(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path, eval_steps=5)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    kinds = [e["event"] for e in sink.events]
    assert kinds[0] in ("log", "warning", "started") and kinds[-1] == "finished"
    started = sink.of("started")[0]
    assert started["total_steps"] == 10 and 0 < started["trainable_params"] < started["total_params"]
    steps = sink.of("step")
    assert [s["step"] for s in steps] == list(range(1, 11))
    for s in steps:
        assert s["loss"] is not None and s["lr"] is not None and s["tokens_per_s"] > 0
        assert s["eta_s"] is not None and s["grad_norm"] is not None
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert sink.of("eval"), "eval every 5 steps was asked for"
    run = Path(cfg.output_dir)
    assert [e["event"] for e in read_events(run / "events.jsonl")] == kinds
    assert RunConfig.load(run / "run.yaml") == cfg
    adapter = run / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 14, 20, 3]])
    with torch.no_grad():
        ref = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter)(ids).logits
    assert not torch.allclose(ref, tuned), "the adapter changed nothing"


def _engine_proc(cfg: RunConfig, tmp_path: Path) -> subprocess.Popen:
    run_file = tmp_path / "run.yaml"
    cfg.save(run_file)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # JSON events on stdout only when asked (the studio asks); the default is readable lines.
    return subprocess.Popen([sys.executable, "-m", "engine", "train", str(run_file), "--format", "json"], cwd=REPO,
                            env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_until(proc, kind: str, timeout: float = 240) -> list[dict]:
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            ev = json.loads(line)
            seen.append(ev)
            if ev["event"] == kind or ev["event"] == "failed":
                return seen
    raise AssertionError(f"no {kind} event; saw {[e['event'] for e in seen]}; stderr: {proc.stderr.read()[-2000:]}")


@pytest.mark.parametrize("how", ["stdin", "sigterm"])
def test_stop_saves_a_loadable_adapter_and_exits_0(tiny_model_dir, tmp_path, how):
    cfg = tiny_config(tiny_model_dir, tmp_path, max_steps=500)
    proc = _engine_proc(cfg, tmp_path)
    try:
        _read_until(proc, "step")
        if how == "stdin":
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        else:
            proc.terminate()
        events = _read_until(proc, "stopped")
        assert events[-1]["event"] == "stopped", events[-1]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = events[-1]
    assert stopped["step"] < 500
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), stopped["adapter_dir"])
    ckpt = Path(cfg.output_dir) / "checkpoints" / f"checkpoint-{stopped['step']}"
    assert (ckpt / "trainer_state.json").exists(), "a stop also leaves a checkpoint to resume from"


def test_resume_reproduces_the_uninterrupted_losses(tiny_model_dir, tmp_path):
    full_sink = ListSink()
    (tmp_path / "a").mkdir()
    cfg_full = tiny_config(tiny_model_dir, tmp_path / "a", max_steps=8)
    cfg_full.method.dropout = 0.1  # dropout makes the RNG state part of what resume must restore
    assert train(cfg_full, sinks=[full_sink]).status == "finished"
    full = {e["step"]: e["loss"] for e in full_sink.of("step")}

    (tmp_path / "b").mkdir()
    cfg = tiny_config(tiny_model_dir, tmp_path / "b", max_steps=8)
    cfg.method.dropout = 0.1
    stop = StopFlag()

    def stop_at_4(ev):
        if ev["event"] == "step" and ev["step"] >= 4:
            stop.set()

    first = train(cfg, sinks=[CallbackSink(stop_at_4)], stop=stop)
    assert first.status == "stopped"
    resumed_sink = ListSink()
    cfg.train.resume_from = "latest"
    assert train(cfg, sinks=[resumed_sink]).status == "finished"
    resumed = {e["step"]: e["loss"] for e in resumed_sink.of("step")}
    assert min(resumed) > 4
    for step, loss in resumed.items():
        assert loss == pytest.approx(full[step], rel=1e-5, abs=1e-6), step


@pytest.mark.parametrize("method", ["selective", "bottleneck"])
def test_self_saving_methods_checkpoint_only_what_trained_and_resume_exactly(method, tiny_model_dir, tmp_path):
    """BitFit/selective/bottleneck checkpoints hold the method's tensors (not a whole model) and
    a resume from one continues the uninterrupted run's losses."""
    from engine.config import RunConfig as Cfg

    def config(sub):
        (tmp_path / sub).mkdir()
        base = tiny_config(tiny_model_dir, tmp_path / sub, max_steps=8, lr=2e-3)
        d = base.to_dict()
        d["method"] = {"name": method, **({"last_n_layers": 1} if method == "selective" else {"dropout": 0.1})}
        return Cfg.from_dict(d)

    full_sink = ListSink()
    assert train(config("a"), sinks=[full_sink]).status == "finished"
    full = {e["step"]: e["loss"] for e in full_sink.of("step")}

    cfg = config("b")
    stop = StopFlag()
    first = train(cfg, sinks=[CallbackSink(lambda ev: ev["event"] == "step" and ev["step"] >= 4 and stop.set())],
                  stop=stop)
    assert first.status == "stopped"
    ckpt = sorted((Path(cfg.output_dir) / "checkpoints").glob("checkpoint-*"))[-1]
    meta = json.loads((ckpt / "adapter_config.json").read_text())
    assert meta["studio_method"] == method
    assert not (ckpt / "model.safetensors").exists(), "a checkpoint must not hold the whole model"
    cfg.train.resume_from = "latest"
    resumed_sink = ListSink()
    assert train(cfg, sinks=[resumed_sink]).status == "finished"
    resumed = {e["step"]: e["loss"] for e in resumed_sink.of("step")}
    assert min(resumed) > 4
    for step, loss in resumed.items():
        assert loss == pytest.approx(full[step], rel=1e-5, abs=1e-6), step


def test_missing_weights_fail_cleanly(tmp_path, tiny_model_dir):
    import shutil

    broken = tmp_path / "noweights"
    shutil.copytree(tiny_model_dir, broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    cfg = tiny_config(broken, tmp_path)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "failed"
    failed = sink.of("failed")[0]
    assert str(broken) in failed["error"] and "no weights" in failed["error"]
    assert "Traceback" not in failed["error"]


def test_failed_event_keeps_a_traceback_only_for_our_own_faults(tiny_model_dir, tmp_path, monkeypatch):
    """A UserError (here a DataError: no such file) is reported by its message alone; an unexpected
    exception keeps its traceback for the bug report."""
    import engine.training.run

    cfg = tiny_config(tiny_model_dir, tmp_path)
    cfg.data.path = str(tmp_path / "missing.jsonl")
    sink = ListSink()
    assert train(cfg, sinks=[sink]).status == "failed"
    failed = sink.of("failed")[0]
    assert "missing.jsonl" in failed["error"] and "traceback" not in failed

    def boom(*a, **kw):
        raise RuntimeError("boom inside the engine")

    monkeypatch.setattr(engine.training.run, "build_for_training", boom)
    (tmp_path / "second").mkdir()
    cfg = tiny_config(tiny_model_dir, tmp_path / "second")
    sink = ListSink()
    assert train(cfg, sinks=[sink]).status == "failed"
    failed = sink.of("failed")[0]
    assert failed["error"] == "RuntimeError: boom inside the engine"
    assert "Traceback" in failed["traceback"] and "boom inside the engine" in failed["traceback"]


def test_cli_prints_any_user_error_plainly_with_exit_2(tmp_path, capsys):
    """ConfigError, ModelError, DataError and ExportError all derive from UserError: one message, exit 2."""
    from engine.cli import main

    assert main(["inspect", str(tmp_path / "no-such-model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_cli_reports_bad_run_file_without_traceback(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("train: {batch_size: 0}\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "engine", "train", str(bad), "--format", "json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2  # the user's mistake: exit 2, as every other verb (docs/architecture.md, Errors)
    failed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    assert failed["event"] == "failed" and "train.batch_size" in failed["error"]
    assert "Traceback" not in proc.stderr


def test_cli_unknown_override_field(tmp_path):
    run = tmp_path / "run.yaml"
    RunConfig().save(run)
    proc = subprocess.run([sys.executable, "-m", "engine", "train", str(run), "--set", "train.speed=9"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "train.speed" in proc.stderr and "unknown field" in proc.stderr and "Traceback" not in proc.stderr


def test_out_of_memory_hint_names_levers():
    cfg = RunConfig()
    cfg.train.batch_size = 8
    hint = hint_for(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), cfg)
    assert "batch" in hint and "gradient checkpointing" in hint and "qlora" in hint


def test_bad_data_line_fails_the_run_with_file_and_line(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path)
    p = Path(cfg.data.path)
    lines = p.read_text(encoding="utf-8").splitlines()
    lines[2] = '{"messages": [{"role": "user", "content": "hi"}'  # torn JSON on line 3
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sink = ListSink()
    assert train(cfg, sinks=[sink]).status == "failed"
    failed = sink.of("failed")[0]
    assert "line 3" in failed["error"] and p.name in failed["error"]
    assert "skip_bad_lines" in failed["error"] + failed["hint"]
    assert not (Path(cfg.output_dir) / "adapter").exists()


def test_checkpoints_every_n_steps_keep_the_last_k(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path, max_steps=6, save_steps=2, save_total_limit=2)
    sink = ListSink()
    assert train(cfg, sinks=[sink]).status == "finished"
    assert [e["step"] for e in sink.of("checkpoint")] == [2, 4, 6]
    kept = sorted(p.name for p in (Path(cfg.output_dir) / "checkpoints").iterdir())
    assert kept == ["checkpoint-4", "checkpoint-6"]


def test_eight_bit_optimizer_trains_on_cpu(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path, max_steps=4, optimizer="adamw_8bit")
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    assert len(sink.of("step")) == 4
