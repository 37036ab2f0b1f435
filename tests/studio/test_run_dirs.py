"""Preparing runs: fresh output folders, resume, absolute paths; the engine's stderr in the log."""

from __future__ import annotations

from pathlib import Path

import yaml

from engine.config import RunConfig
from studio.run_dirs import fresh_dir, has_checkpoint, prepare_run


def test_fresh_dir_never_reuses_a_run(tmp_path):
    out = tmp_path / "runs" / "demo"
    assert fresh_dir(out) == out
    out.mkdir(parents=True)
    assert fresh_dir(out) == out  # empty folders are fine
    (out / "events.jsonl").write_text("{}\n")
    assert fresh_dir(out) == out.with_name("demo-2")
    (out.with_name("demo-2")).mkdir()
    (out.with_name("demo-2") / "x").write_text("")
    assert fresh_dir(out) == out.with_name("demo-3")


def test_prepare_run_makes_paths_absolute(tmp_path, monkeypatch, tiny_data):
    monkeypatch.chdir(tiny_data.parent.parent)
    cfg = RunConfig()
    cfg.data.path = str(Path(tiny_data.parent.name) / tiny_data.name)  # relative to cwd
    cfg.output_dir = "runs/x"
    run_cfg, run_file = prepare_run(cfg)
    assert Path(run_cfg.output_dir).is_absolute() and Path(run_cfg.data.path) == tiny_data.resolve()
    assert run_cfg.model.name_or_path == "demo"
    written = yaml.safe_load(Path(run_file).read_text())
    assert written["output_dir"] == run_cfg.output_dir
    assert RunConfig.load(run_file).to_dict() == run_cfg.to_dict()


def test_resume_keeps_the_folder_and_asks_for_latest(tmp_path):
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    assert not has_checkpoint(out)
    (ckpt / "trainer_state.json").write_text("{}")
    assert has_checkpoint(out)
    cfg = RunConfig()
    cfg.output_dir = str(out)
    run_cfg, _ = prepare_run(cfg, resume=True)
    assert run_cfg.output_dir == str(out) and run_cfg.train.resume_from == "latest"


def test_engine_stderr_reaches_the_log_panel(make_window, qtbot, tmp_path, fake_engine):
    from studio.supervisor import RunSupervisor

    win = make_window(supervisor=RunSupervisor(command=fake_engine(steps=5, delay=0.01)))
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "stderr")
    win.config_model.set_config(cfg)
    with qtbot.waitSignal(win.runs.supervisor.sig_finished, timeout=20_000):
        win.runs.start()
    qtbot.waitUntil(lambda: "fake engine: loading" in win.panels["log"].plain_text(), timeout=3000)
    assert "Finished" in win.panels["log"].plain_text()
    assert win.settings.get("recent/runs")[0] == cfg.output_dir
