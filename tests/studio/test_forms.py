"""Forms generated from the config dataclasses: round trip, inline validation, Start gating."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import DataConfig, RunConfig, TrainConfig
from engine.methods import PARAMS
from studio.forms import DataclassForm


def _changed(obj):
    """A copy of a dataclass with every simple field moved off its default (within limits)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        md = f.metadata
        if f.name == "name":
            continue
        if "choices" in md:
            others = [c for c in md["choices"] if c != v]
            if others:
                out[f.name] = others[-1]
        elif isinstance(v, bool):
            out[f.name] = not v
        elif isinstance(v, int):
            out[f.name] = min(v + 3, md.get("max", v + 3))
        elif isinstance(v, float):
            out[f.name] = min(v + 0.125, md.get("max", v + 0.125))
    return dataclasses.replace(obj, **out)


@pytest.mark.parametrize("klass", [TrainConfig, DataConfig])
def test_section_form_round_trip(qtbot, klass):
    form = DataclassForm(klass, klass.__name__.lower())
    qtbot.addWidget(form)
    want = _changed(klass())
    form.set_values(want)
    values, errors = form.values()
    assert errors == {}
    assert klass(**values) == want


def test_window_round_trip_every_method(make_window, qtbot):
    win = make_window()
    for name, klass in PARAMS.items():
        cfg = RunConfig()
        cfg.method = _changed(klass())
        if hasattr(cfg.method, "target_modules"):
            cfg.method.target_modules = ["q_proj", "v_proj"]
        if name == "qlora":
            cfg.model.quantization = "nf4"
        cfg.train = _changed(TrainConfig())
        cfg.data.max_length = 300
        cfg.output_dir = "runs/round-trip"
        win.config_model.set_config(cfg)
        got, _errors = win.config_model.collect()
        assert got.to_dict() == cfg.to_dict(), name


def test_invalid_field_disables_start_with_message(make_window, qtbot):
    win = make_window()
    win.config_model.set_config(RunConfig())
    qtbot.waitUntil(lambda: win.act_start.isEnabled(), timeout=5000)
    lr = win.panels["training"].form.editors["lr"].widget
    qtbot.keyClicks(lr, "x")  # "0.0002x"
    qtbot.waitUntil(lambda: not win.act_start.isEnabled(), timeout=3000)
    assert win.panels["training"].form.error_text("lr") == "must be a number"
    # the window names its control, never the run-file key (issue 15: keys are for the CLI)
    assert "“Learning rate” (Training panel)" in win.status.validity.text()
    assert "“Learning rate” (Training panel)" in win.act_start.toolTip()
    assert "train.lr" not in win.status.validity.text() + win.act_start.toolTip()
    lr.setText("0.001")
    qtbot.waitUntil(lambda: win.act_start.isEnabled(), timeout=3000)
    assert win.panels["training"].form.error_text("lr") == ""


def test_range_and_cross_field_errors(make_window, qtbot):
    win = make_window()
    win.config_model.set_config(RunConfig())
    win.panels["method"].form.editors["dropout"].widget.setText("2")
    qtbot.waitUntil(lambda: not win.act_start.isEnabled(), timeout=3000)
    assert "0.9" in win.panels["method"].form.error_text("dropout")
    win.panels["method"].form.editors["dropout"].widget.setText("0.1")
    win.panels["training"].form.editors["epochs"].widget.setText("0")
    qtbot.waitUntil(lambda: "train.epochs" in win.config_model.errors, timeout=3000)
    assert not win.act_start.isEnabled()
    assert win.panels["training"].form.error_text("epochs")


def test_missing_data_file_is_marked(make_window, qtbot, tmp_path):
    win = make_window()
    win.config_model.set_config(RunConfig())
    win.panels["data"].path.setText(str(tmp_path / "nope.jsonl"))
    qtbot.waitUntil(lambda: "data.path" in win.config_model.errors, timeout=3000)
    assert not win.act_start.isEnabled()
    assert "not found" in win.panels["data"].path_error.text()


def test_run_file_save_and_load(make_window, qtbot, tmp_path):
    win = make_window()
    cfg = RunConfig()
    cfg.train.lr = 5e-4
    cfg.method.r = 8
    win.config_model.set_config(cfg)
    path = tmp_path / "saved.yaml"
    win.files.run_file = str(path)
    assert win.files.save_run_file()
    assert RunConfig.load(path).to_dict() == cfg.to_dict()
    win.config_model.set_config(RunConfig())
    assert win.files.load_yaml(path)
    assert win.config_model.config.to_dict() == cfg.to_dict()


def test_an_emptied_whole_number_field_is_marked_not_kept(make_window, qtbot):
    """The walk of 2026-11-30: clearing “Max steps” left the box empty while the run kept the old
    value (Start said “300 steps”). An empty whole-number field is marked and gates Start."""
    from PySide6.QtCore import Qt

    win = make_window()
    win.config_model.set_config(RunConfig())
    qtbot.waitUntil(lambda: win.act_start.isEnabled(), timeout=5000)
    box = win.panels["training"].form.editors["max_steps"].widget
    line = box.lineEdit()
    line.selectAll()
    qtbot.keyClick(line, Qt.Key.Key_Delete)
    qtbot.keyClick(line, Qt.Key.Key_Tab)
    qtbot.waitUntil(lambda: not win.act_start.isEnabled(), timeout=3000)
    assert box.text() == ""  # shown as the user left it, never refilled with the old number
    assert win.panels["training"].form.error_text("max_steps") == "must be a whole number"
    assert "“Max steps” (Training panel)" in win.act_start.toolTip()
    qtbot.keyClicks(line, "7")
    qtbot.waitUntil(lambda: win.act_start.isEnabled(), timeout=3000)
    assert win.config_model.config.train.max_steps == 7


@pytest.mark.parametrize("text,key", [
    ("model: {name_or_path: demo}\ntrain: {max_steps: 3, lr: fast}\n", "train.lr"),
    ("model: {name_or_path: demo}\ntrian: {max_steps: 3}\n", "trian"),
])
def test_a_bad_run_file_is_named_with_its_keys(make_window, qtbot, tmp_path, text, key):
    """The walk of 2026-11-30: opening a run file with `lr: fast` said “Learning rate (Training
    panel): must be a number (got 'fast')” with a “Go to Learning rate” button, while that control
    showed the window's own 0.001 (the file was not loaded); a misspelt section listed the valid
    ones as “model, data, …, “Output folder” (Training panel)”. The problem is in the file: the
    message names the file and the keys as written in it, and offers no control to go to."""
    from PySide6.QtWidgets import QMessageBox

    win = make_window()
    win.config_model.set_config(RunConfig())
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert not win.files.load_yaml(path)
    box = next(b for b in win.findChildren(QMessageBox) if b.isVisible())
    assert str(path) in box.text() and key in box.text(), box.text()
    assert "(Training panel)" not in box.text()
    assert [b.text() for b in box.buttons() if b.text().startswith("Go to")] == []
    assert win.config_model.config.train.lr == RunConfig().train.lr  # the form is unchanged
    box.close()
