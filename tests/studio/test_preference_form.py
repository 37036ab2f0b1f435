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
