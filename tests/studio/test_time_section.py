"""The estimate panel's "Measure time": a real engine measurement in its own process, shown with
what it rests on; stale after a change; cancelled by a run or by the user; errors as messages."""

from __future__ import annotations

import copy

import pytest

from engine import wire
from studio.panels.estimate_time import TimeSection, fmt_span
from studio.time_probe import failure_text


def test_fmt_span_reads_like_a_person():
    assert [fmt_span(s) for s in (4.24, 42, 200, 1500, 3600, 7800, None)] == \
        ["4.2 s", "42 s", "3.3 min", "25 min", "1 h", "2 h 10 min", "—"]


def test_failure_text_prefers_the_engines_message():
    def progress(text):
        return wire.encode(wire.progress(text))

    tail = [progress("Loading weights"), "Traceback…", "error: data.path: the file x.jsonl does not exist"]
    assert failure_text(2, tail) == "data.path: the file x.jsonl does not exist"
    assert "signal 9" in failure_text(-9, [progress("Timing step 1 of 3")])
    assert failure_text(1, [progress("a"), "RuntimeError: boom"]).endswith("RuntimeError: boom")
    assert failure_text(1, ["RuntimeError: boom", progress("a")]).endswith("RuntimeError: boom")


def test_measure_shows_the_run_and_goes_stale_on_change(qtbot, tiny_config):
    sec = TimeSection()
    qtbot.addWidget(sec)
    cfg = tiny_config(steps=5)
    sec.set_config(cfg)
    assert sec.measure_btn.isEnabled()
    progress = []
    sec.probe.sig_progress.connect(progress.append)
    with qtbot.waitSignal(sec.probe.sig_done, timeout=240_000) as done:
        qtbot.mouseClick(sec.measure_btn, qtbot_button())
        assert not sec.measure_btn.isEnabled() and sec.cancel_btn.isVisibleTo(sec)
    t = done.args[0]
    assert t["total_steps"] == 5 and t["from_data"]
    assert any(p.startswith("Timing step") for p in progress)
    assert sec.grid.values["The run"].text().startswith("5 steps")
    assert sec.grid.values["Per step"].text() == f"{t['step_s']:.2f} s"
    assert "Measured at" in sec.status.text() and "token lengths of all" in sec.basis.text()
    assert sec.measure_btn.isEnabled() and not sec.cancel_btn.isVisibleTo(sec)

    changed = copy.deepcopy(cfg)
    changed.train.batch_size = 4
    sec.set_config(changed)
    assert "Settings changed" in sec.status.text() and not sec.grid.isEnabled()
    moved = copy.deepcopy(cfg)
    moved.output_dir = cfg.output_dir + "-elsewhere"          # where it saves does not change the time
    sec.set_config(moved)
    assert "Settings changed" not in sec.status.text() and sec.grid.isEnabled()


def test_a_starting_run_cancels_a_measurement_and_blocks_new_ones(qtbot, tiny_config):
    sec = TimeSection()
    qtbot.addWidget(sec)
    sec.set_config(tiny_config())
    sec.measure()
    proc = sec.probe.process
    assert proc is not None and sec.probe.running
    sec.set_run_active(True)
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=10_000)
    assert "cancelled" in sec.status.text() and not sec.measure_btn.isEnabled()
    assert "training" in sec.measure_btn.toolTip()
    sec.measure()                                           # ignored while a run trains
    assert not sec.probe.running
    sec.set_run_active(False)
    assert sec.measure_btn.isEnabled()


def test_cancel_kills_the_measurement_and_drops_its_result(qtbot, tiny_config):
    sec = TimeSection()
    qtbot.addWidget(sec)
    sec.set_config(tiny_config())
    results = []
    sec.probe.sig_done.connect(results.append)
    sec.probe.sig_failed.connect(results.append)
    sec.measure()
    proc, command = sec.probe.process, sec.probe._command
    qtbot.mouseClick(sec.cancel_btn, qtbot_button())
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=10_000)
    command.wait(10)  # its watching thread has sent everything it will send (then it ends)
    assert not command.thread_alive
    qtbot.waitUntil(lambda: sec.status.text() == "Measurement cancelled." and sec.measure_btn.isEnabled(),
                    timeout=10_000)
    qtbot.wait(300)  # what the killed probe sent has been delivered (and must have been dropped)
    assert results == []


def test_a_bad_model_is_a_message_not_a_crash(qtbot, tiny_config, tmp_path):
    sec = TimeSection()
    qtbot.addWidget(sec)
    cfg = tiny_config()
    cfg.model.name_or_path = str(tmp_path / "no-such-model")
    sec.set_config(cfg)
    with qtbot.waitSignal(sec.probe.sig_failed, timeout=120_000) as failed:
        sec.measure()
    assert "no-such-model" in failed.args[0]
    assert sec.status.text().startswith("Could not measure:") and "Traceback" not in sec.status.text()
    assert sec.measure_btn.isEnabled()


def test_the_window_wires_the_section_to_config_and_runs(make_window, tiny_config):
    win = make_window(initial=tiny_config())
    sec = win.panels["estimate"].time
    assert sec._cfg is not None and sec.measure_btn.isEnabled()
    win.panels["estimate"].time.set_run_active(False)
    win.runs.supervisor.is_active = lambda: True     # as while a run trains
    win.runs.update_actions()
    assert not sec.measure_btn.isEnabled()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


@pytest.fixture(autouse=True)
def _no_probe_left(qtbot):
    yield
    from PySide6.QtWidgets import QApplication

    for w in QApplication.allWidgets():
        if isinstance(w, TimeSection):
            w.shutdown()


def test_no_temp_space_is_a_message(qtbot, tiny_config, monkeypatch):
    import tempfile

    sec = TimeSection()
    qtbot.addWidget(sec)
    sec.set_config(tiny_config())

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    with qtbot.waitSignal(sec.probe.sig_failed, timeout=5_000) as failed:
        sec.measure()
    assert "No space left" in failed.args[0] and sec.measure_btn.isEnabled()
    assert sec.status.text().startswith("Could not measure:")
