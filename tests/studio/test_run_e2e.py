"""Real runs: the studio's supervisor starts `python -m engine train` on a tiny offline model."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from engine.events import read_events

RUN_TIMEOUT_MS = 240_000  # a child imports torch+transformers+peft (~8 s alone, more when the CPU is shared)


def _wait_state(qtbot, win, states, timeout=RUN_TIMEOUT_MS):
    qtbot.waitUntil(lambda: win.runs.supervisor.state in states, timeout=timeout)


def test_full_run_updates_plots_and_finishes(make_window, qtbot, tiny_config):
    win = make_window()
    cfg = tiny_config(steps=6, eval_steps=0)
    cfg.data.validation_split = 0.2
    win.config_model.set_config(cfg)
    qtbot.waitUntil(win.act_start.isEnabled, timeout=5000)
    with qtbot.waitSignal(win.runs.supervisor.sig_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        win.act_start.trigger()
    assert blocker.args[0]["event"] == "finished"
    qtbot.waitUntil(lambda: win.panels["monitor"].curve_points("loss") == 6, timeout=3000)
    assert win.panels["monitor"].curve_points("lr") == 6
    assert win.panels["monitor"].state_label.text() == "Finished"
    assert win.panels["monitor"].progress.value() == 6
    run_dir = Path(blocker.args[0]["run_dir"])
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert "Finished" in win.panels["log"].plain_text()
    assert win.act_start.isEnabled() and not win.act_stop.isEnabled()

    # Re-attach: a new window (same settings) replays the run from its events.jsonl.
    n_steps = len([e for e in read_events(run_dir / "events.jsonl") if e["event"] == "step"])
    win.shutdown()
    again = make_window(reattach=True)
    qtbot.waitUntil(lambda: again.runs.supervisor.state == "finished", timeout=10_000)
    qtbot.waitUntil(lambda: again.panels["monitor"].curve_points("loss") == n_steps, timeout=3000)
    assert again.panels["monitor"].state_label.text() == "Finished"
    assert again.panels["monitor"].progress.value() == 6


def test_stop_mid_run_leaves_loadable_adapter(make_window, qtbot, tiny_config, tiny_model_dir):
    win = make_window()
    win.config_model.set_config(tiny_config(steps=2000))
    with qtbot.waitSignal(win.runs.supervisor.sig_event, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda ev: ev.get("event") == "step" and ev["step"] >= 2):
        assert win.runs.start()
    assert win.act_stop.isEnabled()
    with qtbot.waitSignal(win.runs.supervisor.sig_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        win.act_stop.trigger()
    ev = blocker.args[0]
    assert ev["event"] == "stopped" and ev["step"] < 2000
    assert win.panels["monitor"].state_label.text().startswith("Stopped")

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, ev["adapter_dir"])
    assert any("lora_" in n for n, _ in model.named_parameters())


def test_killed_engine_shows_failure_and_window_stays_usable(make_window, qtbot, tiny_config):
    win = make_window()
    win.config_model.set_config(tiny_config(steps=2000))
    with qtbot.waitSignal(win.runs.supervisor.sig_event, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda ev: ev.get("event") == "step"):
        assert win.runs.start()
    with qtbot.waitSignal(win.runs.supervisor.sig_failed, timeout=30_000) as blocker:
        os.kill(win.runs.supervisor.pid, signal.SIGKILL)  # what the OOM killer does
    assert "killed" in blocker.args[0]["error"]
    banner = win.panels["monitor"].banner
    assert banner.isVisible() and "killed" in banner.title.text()
    assert banner.hint.text()
    assert win.panels["monitor"].state_label.text() == "Failed"
    # still usable: the forms validate and a new run may start
    assert win.act_start.isEnabled() and not win.act_stop.isEnabled()
    win.panels["training"].form.editors["lr"].widget.setText("bad")
    qtbot.waitUntil(lambda: not win.act_start.isEnabled(), timeout=3000)
    win.panels["training"].form.editors["lr"].widget.setText("0.001")
    qtbot.waitUntil(win.act_start.isEnabled, timeout=3000)


def test_close_keep_running_then_reattach_live(make_window, qtbot, tmp_path, fake_engine):
    from engine.config import RunConfig
    from studio.supervisor import RunSupervisor, pid_alive

    cmd = fake_engine(steps=60, delay=0.05)
    win = make_window(supervisor=RunSupervisor(command=cmd))
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "live")
    win.config_model.set_config(cfg)
    with qtbot.waitSignal(win.runs.supervisor.sig_event, timeout=20_000,
                          check_params_cb=lambda ev: ev.get("step") == 3):
        win.runs.start()
    pid = win.runs.supervisor.pid
    win.ask_close_during_run = lambda: "keep"
    win.close()
    assert not win.isVisible()
    assert pid_alive(pid)

    again = make_window(reattach=True)
    qtbot.waitUntil(lambda: again.runs.supervisor.attached, timeout=5000)
    assert again.runs.supervisor.pid == pid  # following the live process, not just replaying
    qtbot.waitUntil(lambda: again.runs.supervisor.state == "finished", timeout=30_000)
    qtbot.waitUntil(lambda: again.panels["monitor"].curve_points("loss") == 60, timeout=3000)


def test_close_stop_and_save_waits_for_the_adapter(make_window, qtbot, tmp_path, fake_engine):
    from engine.config import RunConfig
    from studio.supervisor import RunSupervisor

    win = make_window(supervisor=RunSupervisor(command=fake_engine(steps=500, delay=0.02)))
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "stop")
    win.config_model.set_config(cfg)
    with qtbot.waitSignal(win.runs.supervisor.sig_event, timeout=20_000, check_params_cb=lambda ev: ev.get("step") == 2):
        win.runs.start()
    win.ask_close_during_run = lambda: "cancel"
    win.close()
    assert win.isVisible()
    win.ask_close_during_run = lambda: "stop"
    win.close()
    assert win.isVisible()  # stays until the engine has saved
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=20_000)
    assert win.runs.supervisor.state == "stopped"


def test_resume_keeps_steps_one_to_n_and_elapsed(make_window, qtbot, tiny_config):
    """Stop, then Resume: the plots keep steps 1..N (rebuilt from events.jsonl) and Elapsed goes on
    from the first part's time. Before issue 15 the curves restarted at the resumed step and the
    y-axes zoomed onto it; Elapsed restarted at 00:00."""
    win = make_window()
    win.config_model.set_config(tiny_config(steps=2000))
    mon = win.panels["monitor"]
    with qtbot.waitSignal(win.runs.supervisor.sig_event, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda ev: ev.get("event") == "step" and ev["step"] >= 3):
        assert win.runs.start()
    with qtbot.waitSignal(win.runs.supervisor.sig_finished, timeout=RUN_TIMEOUT_MS):
        win.act_stop.trigger()
    run_dir = str(win.runs.supervisor.run_dir)
    n = mon.series["loss"].n
    first_part = mon._t_end - mon._t_started
    assert n >= 3 and win.act_resume.isEnabled()
    assert mon.tiles["mem"].title.text() == "Peak RSS (CPU)"  # the quantity the estimate predicts, named
    steps = [e for e in read_events(Path(run_dir) / "events.jsonl") if e["event"] == "step"]
    assert all(e["mem_peak"] >= e["mem_allocated"] > 0 for e in steps)
    win.act_resume.trigger()
    qtbot.waitUntil(lambda: mon.series["loss"].n > n, timeout=RUN_TIMEOUT_MS)
    assert str(win.runs.supervisor.run_dir) == run_dir, "Resume continues the run shown, in its folder"
    x, _ = mon.series["loss"].data()
    assert list(x[:n]) == list(range(1, n + 1)), "steps 1..N are still on the plot"
    assert mon._elapsed_before >= first_part > 0, "Elapsed continues from the first part"
    mon.refresh_all()
    (x0, x1), (y0, y1) = mon.plots["loss"].getViewBox().viewRange() if mon.plots else ((0, 1), (0, 1))
    if mon.plots:
        _, y = mon.series["loss"].data()
        assert x0 <= 1 and y0 <= min(y) and y1 >= max(y), "the axes show the whole curve"
    win.runs.kill()
    qtbot.waitUntil(lambda: not win.runs.is_active(), timeout=30_000)
