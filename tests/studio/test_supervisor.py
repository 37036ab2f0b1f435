"""The supervisor against the fake engine: finish, stop, crash, failure event, attach."""

from __future__ import annotations

import os
import signal

import yaml

from studio.supervisor import RunSupervisor


def _run_yaml(tmp_path, name="run"):
    out = tmp_path / name
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"output_dir": str(out)}))
    return p, out


def _collect(sup):
    events = []
    sup.sig_event.connect(events.append)
    return events


def test_finishes_and_streams_events(qtbot, tmp_path, fake_engine):
    sup = RunSupervisor(command=fake_engine(steps=8, delay=0.01))
    events = _collect(sup)
    p, out = _run_yaml(tmp_path)
    with qtbot.waitSignal(sup.sig_finished, timeout=20000) as blocker:
        sup.start(p, out)
    assert blocker.args[0]["event"] == "finished"
    assert sup.state == "finished"
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 9))
    sup.shutdown()


def test_stop_is_honoured(qtbot, tmp_path, fake_engine):
    sup = RunSupervisor(command=fake_engine(steps=500, delay=0.02))
    p, out = _run_yaml(tmp_path)
    with qtbot.waitSignal(sup.sig_state, timeout=20000, check_params_cb=lambda s: s == "running"):
        sup.start(p, out)
    with qtbot.waitSignal(sup.sig_finished, timeout=20000) as blocker:
        assert sup.stop()
    assert blocker.args[0]["event"] == "stopped"
    assert sup.state == "stopped"
    sup.shutdown()


def test_silent_crash_becomes_failure_with_log_tail(qtbot, tmp_path, fake_engine):
    sup = RunSupervisor(command=fake_engine(steps=50, delay=0.01, crash=3))
    p, out = _run_yaml(tmp_path)
    with qtbot.waitSignal(sup.sig_failed, timeout=20000) as blocker:
        sup.start(p, out)
    info = blocker.args[0]
    assert "exit code 3" in info["error"]
    assert "segfault-ish" in info["log_tail"]
    sup.shutdown()


def test_failed_event_keeps_engine_hint(qtbot, tmp_path, fake_engine):
    sup = RunSupervisor(command=fake_engine(fail=1))
    p, out = _run_yaml(tmp_path)
    with qtbot.waitSignal(sup.sig_failed, timeout=20000) as blocker:
        sup.start(p, out)
    assert blocker.args[0]["error"] == "CUDA out of memory."
    assert blocker.args[0]["hint"] == "Try a smaller batch."
    sup.shutdown()


def test_kill_reports_failure(qtbot, tmp_path, fake_engine):
    sup = RunSupervisor(command=fake_engine(steps=1000, delay=0.02))
    p, out = _run_yaml(tmp_path)
    with qtbot.waitSignal(sup.sig_state, timeout=20000, check_params_cb=lambda s: s == "running"):
        sup.start(p, out)
    with qtbot.waitSignal(sup.sig_failed, timeout=20000) as blocker:
        os.kill(sup.pid, signal.SIGKILL)  # as the OOM killer would: not through the supervisor
    assert "killed" in blocker.args[0]["error"]
    sup.shutdown()


def test_attach_replays_and_follows(qtbot, tmp_path, fake_engine):
    sup = RunSupervisor(command=fake_engine(steps=40, delay=0.05))
    p, out = _run_yaml(tmp_path)
    with qtbot.waitSignal(sup.sig_event, timeout=20000, check_params_cb=lambda e: e.get("step") == 5):
        sup.start(p, out)
    pid = sup.pid
    sup.detach()  # the window closed with "keep running"
    other = RunSupervisor()
    events = _collect(other)
    with qtbot.waitSignal(other.sig_finished, timeout=30000):
        other.attach(out, pid=pid)
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, 41))
    other.shutdown()
    sup.shutdown()
