"""train.task and train.preference in the Training panel: the preference options appear for a
preference task, each only for the tasks it serves, and round-trip through the run file."""

from __future__ import annotations


def test_preference_options_follow_the_task(make_window, qtbot, tiny_config):
    win = make_window()
    cfg = tiny_config()
    win.config_model.set_config(cfg)
    panel = win.panels["training"]
    task = panel.form.editors["task"]
    assert not panel.pref_box.isVisibleTo(panel), "SFT has no preference options"

    task.widget.setCurrentIndex(task.widget.findData("kto"))
    assert panel.pref_box.isVisibleTo(panel)
    pf = panel.pref_form
    assert pf.editors["desirable_weight"].isVisibleTo(pf) and not pf.editors["simpo_gamma"].isVisibleTo(pf)
    task.widget.setCurrentIndex(task.widget.findData("simpo"))
    assert pf.editors["simpo_gamma"].isVisibleTo(pf) and not pf.editors["desirable_weight"].isVisibleTo(pf)
    assert "γ" in pf._labels["train.preference.simpo_gamma"].toolTip()  # the field's help

    pf.editors["simpo_gamma"].widget.setText("1.2")
    got, errors = win.config_model.collect()
    assert not errors and got.train.task == "simpo" and got.train.preference.simpo_gamma == 1.2

    # A run file with a task opens with its options shown; a bad value is named in the window.
    cfg.train.task, cfg.train.preference.beta = "dpo", 0.3
    win.config_model.set_config(cfg)
    assert panel.pref_box.isVisibleTo(panel) and pf.editors["beta"].value() == 0.3
    pf.editors["beta"].widget.setText("-1")
    got, errors = win.config_model.collect()
    assert "train.preference.beta" in errors


def test_a_dpo_run_from_the_window_shows_the_preference_plots(make_window, qtbot, tiny_config, tmp_path):
    """A real DPO run started from the window: the monitor swaps learning rate and gradient norm
    for the rewards (chosen, rejected, margin) and the reward accuracy, one point per step."""
    import json

    from tests.studio.test_run_e2e import RUN_TIMEOUT_MS

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "chosen": f"It is {i + 1}.",
                                         "rejected": "I cannot say."}) + "\n" for i in range(24)),
                     encoding="utf-8")
    win = make_window()
    cfg = tiny_config(steps=5, task="dpo", logging_steps=1, lr=5e-3)
    cfg.data.path = str(pairs)
    win.config_model.set_config(cfg)
    qtbot.waitUntil(win.act_start.isEnabled, timeout=5000)
    with qtbot.waitSignal(win.runs.supervisor.sig_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        win.act_start.trigger()
    assert blocker.args[0]["event"] == "finished", blocker.args[0]
    mon = win.panels["monitor"]
    mon.build_plots()
    mon.refresh_all()
    assert mon.preference
    assert mon.slots["rewards"].isVisibleTo(mon) and not mon.slots["lr"].isVisibleTo(mon)
    for key in ("r_chosen", "r_rejected", "r_margin", "r_acc"):
        assert mon.curve_points(key) == 5, key
    x, margins = mon.series["r_margin"].data()
    assert margins[-1] > margins[0]


def test_monitor_swaps_in_the_preference_plots_from_the_events(qtbot):
    from studio.panels.monitor import MonitorPanel

    mon = MonitorPanel()
    qtbot.addWidget(mon)
    mon.build_plots()
    mon.on_event({"event": "started", "total_steps": 3, "task": "kto", "time": 1.0})
    assert mon.preference and not mon.slots["grad"].isVisibleTo(mon) and mon.slots["pref"].isVisibleTo(mon)
    for step in (1, 2, 3):
        mon.on_event({"event": "step", "step": step, "loss": 0.5, "lr": 1e-3, "time": 1.0 + step,
                      "metrics": {"rewards/chosen": 0.1 * step, "rewards/rejected": -0.1 * step,
                                  "rewards/margins": 0.2 * step, "kl": 0.01}})
    mon.refresh_all()
    assert mon.curve_points("r_margin") == 3 and mon.curve_points("r_kl") == 3 and mon.curve_points("r_acc") == 0
    mon.on_event({"event": "started", "total_steps": 3, "task": "sft", "time": 9.0})
    assert not mon.preference and mon.slots["lr"].isVisibleTo(mon) and not mon.slots["rewards"].isVisibleTo(mon)
    mon.timer.stop()


def test_data_panel_preview_of_preference_data(tiny_config, tmp_path):
    """The data panel's job reads preference data as the run will: shape, report lines, and each
    pair as prompt (masked), chosen (trained, ✓) and rejected (✗)."""
    import json

    from studio.jobs import preview

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": f"q{i}", "chosen": "a longer good answer", "rejected": "bad"})
                             + "\n" for i in range(10)), encoding="utf-8")
    cfg = tiny_config(task="dpo")
    cfg.data.path = str(pairs)
    p = preview(None, cfg.to_dict())
    assert not p["error"] and p["format"] == "preference (prompt_chosen_rejected)"
    assert p["reason"] == "columns question, chosen, rejected" and p["n_train"] == 10
    assert any("identical chosen and rejected" in w for w in p["warnings"])
    assert any("length balance" in w for w in p["warnings"])
    first = p["rows"][0]
    assert first[0] == ["user: q0\n", False] and first[1][0].startswith("✓ assistant: a longer good answer")
    assert first[1][1] is True and first[2] == ["✗ assistant: bad", False]
    assert len(p["lengths"]) == 10
    cfg.train.task = "kto"
    p = preview(None, cfg.to_dict())
    assert p["n_train"] == 20 and {r[1][1] for r in p["rows"]} == {True, False}
