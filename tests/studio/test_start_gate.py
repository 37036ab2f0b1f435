"""Start is off for every state the window already knows to be invalid — with the reason, by the
control's name, on Start's tooltip and in the status bar — and no failed run is made for them.
Real window, real helper processes (inspection, preview), the tiny offline model.

Before issue 15 each of these started the engine, which failed 10-20 s later and left a failed
run in the list."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QApplication

JOB_TIMEOUT_MS = 240_000  # the helper imports transformers first; a busy machine is slow


def _start_is_off_for(win, qtbot, path: str, words: str, tmp_path):
    from studio.wording import control_label

    qtbot.waitUntil(lambda: path in win.config_model.errors and not win.act_start.isEnabled(), timeout=JOB_TIMEOUT_MS)
    tip, status = win.act_start.toolTip(), win.status.validity.text()
    label = control_label(path)
    assert f"“{label}”" in tip and words in tip, tip
    assert f"“{label}”" in status and words in status, status
    assert path not in tip and path not in status, "the window names its control, not the run-file key"
    assert "report it" not in (tip + status).lower()
    # the user clicks Start anyway (a shortcut): nothing runs, nothing is left behind
    assert not win.runs.start()
    assert not win.runs.is_active()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # the status bar's button takes the user to the control
    assert win.status.go.isVisible() and label in win.status.go.text()
    win.status.go.click()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None, timeout=3000)
    focus = QApplication.focusWidget()
    target = win.findChild(type(focus), f"field:{path}")
    assert focus is target or (target is not None and target.isAncestorOf(focus)), focus.objectName()


@pytest.fixture
def window(make_window, tiny_config, tmp_path, qtbot):
    win = make_window()
    cfg = tiny_config()
    cfg.output_dir = str(tmp_path / "runs" / "gate")
    win.config_model.set_config(cfg)
    qtbot.waitUntil(lambda: win.panels["model"].info is not None, timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(win.act_start.isEnabled, timeout=JOB_TIMEOUT_MS)
    return win


def test_start_is_off_for_a_method_not_for_this_model(window, qtbot, tmp_path):
    method = window.panels["method"]
    method.combo.setCurrentIndex(method.combo.findData("bitfit"))  # the tiny Llama has no biases
    _start_is_off_for(window, qtbot, "method.name", "not for this model", tmp_path)
    method.combo.setCurrentIndex(method.combo.findData("lora"))
    qtbot.waitUntil(window.act_start.isEnabled, timeout=5000)


def test_start_is_off_for_a_data_file_the_preview_rejected(window, qtbot, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ahoy"}]}
    bad.write_text(json.dumps(good) + "\n" + '{"messages": [oops\n' + json.dumps(good) + "\n")
    window.panels["data"].path.setText(str(bad))
    _start_is_off_for(window, qtbot, "data.path", "line 2", tmp_path)
    # the message offers the window's own fix, by the checkbox's name
    assert "“Skip bad lines”" in window.config_model.errors["data.path"]
    assert "data.skip_bad_lines" not in window.panels["data"].path_error.text()
    window.panels["data"].form.editors["skip_bad_lines"].widget.setChecked(True)
    qtbot.waitUntil(window.act_start.isEnabled, timeout=JOB_TIMEOUT_MS)


def test_start_is_off_for_a_model_that_cannot_be_found(window, qtbot, tmp_path):
    window.panels["model"].source.setCurrentText(str(tmp_path / "no-such-model"))
    _start_is_off_for(window, qtbot, "model.name_or_path", "no-such-model", tmp_path)
