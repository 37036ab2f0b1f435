"""The run controller: the run lifecycle and the close policy, without a window where it can be,
and as a real studio process where only that can tell (a QThread left running aborts the app)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import QSettings

from engine.config import RunConfig
from engine.events import read_events
from studio.supervisor import engine_alive

HERE = Path(__file__).resolve().parent


def _steps(run_dir: Path) -> int:
    return sum(1 for e in read_events(run_dir / "events.jsonl") if e.get("event") == "step")


def test_close_keep_running_exits_cleanly_and_the_run_goes_on(tmp_path):
    """Before the reader thread was ended on detach, this exited with SIGABRT (rc 134):
    'QThread: Destroyed while thread 'run-supervisor' is still running'."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", FAKE_STEPS="100000", FAKE_DELAY="0.05",
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PEFT_STUDIO_HOME=str(tmp_path / "studio"))
    out = subprocess.run([sys.executable, str(HERE / "keep_running_app.py"), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    pid = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("pid ")))
    try:
        assert out.returncode == 0, out.stderr[-2000:]
        assert "QThread" not in out.stderr
        assert engine_alive(pid), "the run was kept running"
        run_dir = tmp_path / "run"
        before = _steps(run_dir)
        deadline = time.monotonic() + 60
        while _steps(run_dir) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _steps(run_dir) > before, "the engine still trains (and writes its events) unwatched"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _controller(tmp_path, qtbot, **kw):
    from studio.config_model import ConfigModel
    from studio.run_controller import RunController
    from studio.settings import Settings

    settings = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    loaded = []
    ctl = RunController(settings, ConfigModel(), loaded.append, **kw)
    return ctl, settings, loaded


def test_opening_a_folder_that_is_no_run_is_a_message(tmp_path, qtbot):
    ctl, _settings, _ = _controller(tmp_path, qtbot)
    with qtbot.waitSignal(ctl.sig_error) as blocker:
        assert not ctl.attach(str(tmp_path))
    assert blocker.args[0] == "Open run" and "not a run folder" in blocker.args[1]
    with qtbot.waitSignal(ctl.sig_error) as blocker:
        assert not ctl.resume_run_dir(str(tmp_path))
    assert "no checkpoint" in blocker.args[1]


def test_attach_rebuilds_a_finished_run_from_its_events(tmp_path, qtbot):
    run = tmp_path / "done"
    run.mkdir()
    rows = [{"event": "started", "time": 1, "total_steps": 3, "pid": 0},
            *({"event": "step", "time": 1 + s, "step": s, "loss": 1.0 / s} for s in (1, 2, 3)),
            {"event": "finished", "time": 5, "run_dir": str(run), "adapter_dir": str(run / "adapter")}]
    (run / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ctl, settings, _ = _controller(tmp_path, qtbot)
    shown, events = [], []
    ctl.sig_run_dir.connect(shown.append)
    ctl.sig_event.connect(events.append)
    with qtbot.waitSignal(ctl.sig_finished, timeout=10_000) as blocker:
        assert ctl.attach(str(run))
    assert shown == [str(run)] and [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3]
    assert blocker.args[0]["event"] == "finished" and ctl.supervisor.state == "finished"
    assert settings.get("active/run_dir") == str(run) and settings.get("recent/runs") == [str(run)]
    ctl.shutdown()


def test_close_policy(tmp_path, qtbot, fake_engine):
    from studio.supervisor import RunSupervisor

    ctl, settings, _ = _controller(tmp_path, qtbot, supervisor=RunSupervisor(command=fake_engine(steps=500,
                                                                                                   delay=0.02)))
    assert ctl.may_close(lambda: pytest_fail("no run: nothing to ask"))
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "close")
    ctl.config.validate_now = lambda: (cfg, {})  # no form in this test
    with qtbot.waitSignal(ctl.sig_event, timeout=20_000, check_params_cb=lambda ev: ev.get("step") == 2):
        assert ctl.start()
    assert not ctl.may_close(lambda: "cancel") and ctl.is_active()
    with qtbot.waitSignal(ctl.sig_close_ready, timeout=20_000):
        assert not ctl.may_close(lambda: "stop")
        assert not ctl.may_close(lambda: pytest_fail("already stopping: not asked again"))
    assert ctl.supervisor.state == "stopped"


def pytest_fail(msg):
    raise AssertionError(msg)


def _studio(tmp_path, *args, timeout=300):
    """Run tests/studio/studio_process.py (the real studio.app.main) with an isolated home."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", FAKE_STEPS="100000", FAKE_DELAY="0.05",
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PEFT_STUDIO_HOME=str(tmp_path / "studio"), PYTHONPATH=str(HERE.parents[1]))
    return subprocess.run([sys.executable, str(HERE / "studio_process.py"), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def _said(out, word: str) -> str:
    return next(line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith(word + " "))


def test_keep_running_then_relaunch_with_demo_reattaches_and_keeps_the_users_setup(tmp_path, tiny_model_dir,
                                                                                  tiny_data):
    """`make run` (studio --demo), a run, close with "Keep running", `make run` again: both studio
    processes exit 0, the engine trains on, the relaunch re-attaches with the whole curve so far
    and shows the user's data, not the demo's. Before issue 15, --demo reset the form to the demo
    and turned re-attach off (the monitor said "No run yet")."""
    first = _studio(tmp_path, "start-keep", str(tiny_model_dir), str(tiny_data), "--", "--demo")
    pid = int(_said(first, "pid"))
    try:
        assert first.returncode == 0, first.stdout + first.stderr[-3000:]
        assert "QThread" not in first.stderr
        assert engine_alive(pid), "the run was kept running"
        run_dir = Path(_said(first, "run"))
        assert run_dir.name.startswith("model-lora-data-"), "a readable name from model, method and data"

        again = _studio(tmp_path, "reattach", str(pid), "--", "--demo")
        assert again.returncode == 0, again.stdout + again.stderr[-3000:]
        assert "QThread" not in again.stderr
        curve, _, in_file, _, first_step = _said(again, "curve").split()
        assert int(curve) >= int(in_file) - 2 and int(first_step) == 1, "the whole curve so far, from step 1"
        assert _said(again, "state") == "running"
        assert _said(again, "data") == str(tiny_data), "--demo kept the user's data file"
        before = _steps(run_dir)
        deadline = time.monotonic() + 60
        while _steps(run_dir) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine_alive(pid) and _steps(run_dir) > before, "the engine still trains after the second close"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_close_with_stop_and_save_ends_every_thread_and_helper(tmp_path, tiny_model_dir, tiny_data):
    """Every close path ends cleanly: "Stop and save" waits for the engine's adapter, then the
    studio exits 0 with no QThread left running and no helper process left behind."""
    out = _studio(tmp_path, "start-stop", str(tiny_model_dir), str(tiny_data), "--", "--demo")
    pid = int(_said(out, "pid"))
    helpers = [int(p) for p in _said(out, "helpers").split()]
    try:
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        assert "QThread" not in out.stderr
        run_dir = Path(_said(out, "run"))
        assert any(e.get("event") == "stopped" for e in read_events(run_dir / "events.jsonl")), "saved, then closed"
        assert helpers, "the window's helper processes were running"
        deadline = time.monotonic() + 10
        while any(engine_alive(p) or _alive(p) for p in [pid, *helpers]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not engine_alive(pid) and not any(_alive(p) for p in helpers), "nothing outlives the studio"
    finally:
        for p in [pid, *helpers]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    from studio.supervisor import pid_alive

    return pid_alive(pid)


def _complete_run(tmp_path, steps: int = 3) -> Path:
    """A run folder as the engine leaves a finished run: run.yaml, events, a last checkpoint."""
    run = tmp_path / "done"
    cfg = RunConfig()
    cfg.train.max_steps = steps
    cfg.output_dir = str(run)
    (run / "checkpoints" / f"checkpoint-{steps}").mkdir(parents=True)
    (run / "checkpoints" / f"checkpoint-{steps}" / "trainer_state.json").write_text(
        json.dumps({"global_step": steps, "max_steps": steps}))
    cfg.save(run / "run.yaml")
    rows = [{"event": "started", "time": 1, "total_steps": steps, "pid": 0},
            *({"event": "step", "time": 1 + s, "step": s, "total_steps": steps, "loss": 1.0 / s}
              for s in range(1, steps + 1)),
            {"event": "finished", "time": 9, "step": steps, "run_dir": str(run),
             "adapter_dir": str(run / "adapter")}]
    (run / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_resume_of_a_complete_run_says_how_to_train_on_and_keeps_a_raised_max_steps(
        make_window, qtbot, tmp_path, monkeypatch):
    """The walk of 2026-11-30: Resume on a finished run started the engine, which said 15 s later
    “already complete … raise train.max_steps and resume again”; but Resume always reloaded the
    run's own settings, so a raised “Max steps” was overwritten and the run could never be
    extended from the window. Now a complete run is said to be complete at once (its settings in
    the form), and Resume keeps the form's settings when they differ from the run's only in
    settings a resume may change (docs/resume.md)."""
    run = _complete_run(tmp_path)
    win = make_window()
    other = RunConfig()
    other.method.r = 4  # the form shows another run's settings (a rank is fixed on resume)
    win.config_model.set_config(other)
    started = []
    monkeypatch.setattr(win.runs, "start", lambda resume=False, output_dir=None: started.append(
        (resume, output_dir, win.config_model.validate_now()[0].train.max_steps)) or True)

    with qtbot.waitSignal(win.runs.sig_error) as blocker:
        assert not win.runs.resume_run_dir(str(run))
    title, text = blocker.args
    assert "complete" in text and "“Max steps” (Training panel)" in text and "train.max_steps" not in text
    assert started == [] and win.config_model.validate_now()[0].train.max_steps == 3  # its settings, shown

    win.panels["training"].form.editors["max_steps"].widget.setValue(5)
    win.panels["training"].form.editors["lr"].widget.setText("0.0005")
    assert win.runs.resume_run_dir(str(run))
    assert started == [(True, str(run), 5)] and win.config_model.validate_now()[0].train.lr == 5e-4

    # a fixed setting changed in the form (the rank): the run's own settings are loaded instead
    started.clear()
    win.panels["method"].form.editors["r"].widget.setValue(32)
    with qtbot.waitSignal(win.runs.sig_error):
        assert not win.runs.resume_run_dir(str(run))  # its own max_steps: complete again
    assert started == [] and win.config_model.validate_now()[0].method.r == RunConfig().method.r
