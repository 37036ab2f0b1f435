"""Every run-file key an engine message can name has a control in the window, and "Go to …" takes
the user there (issue 15: "every message names the on-screen control and offers a button that
takes the user there"). The class, not a few instances: every field of the model, data and train
sections and every field of the shown method, walked from the engine's own dataclasses, so a field
added to the engine without a control fails here."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtWidgets import QApplication

from engine.config import DataConfig, ModelConfig, TrainConfig

# Sections whose fields are set by a nested control of their own (the whole section is one place).
NESTED = {"train.distributed"}


def _paths(section: str, klass) -> list[str]:
    """Every leaf field under ``section``; nested sections (train.early_stopping, train.preference,
    …) are walked into, except those set by one control of their own (NESTED)."""
    from engine.fields import is_section

    out = []
    for f in dataclasses.fields(klass):
        path = f"{section}.{f.name}"
        if path in NESTED:
            continue
        if is_section(f):
            out.extend(_paths(path, type(f.default_factory())))
            continue
        out.append(path)
    return out


def test_every_field_has_a_control_the_message_can_go_to(make_window, qtbot):
    from studio.controls import find_control
    from studio.wording import KEY_RE, panel_of, window_text

    win = make_window()
    method = win.panels["method"]
    paths = [*_paths("model", ModelConfig), *_paths("data", DataConfig), *_paths("train", TrainConfig),
             *(f"method.{f.name}" for f in dataclasses.fields(method.form.klass)), "method.name", "output_dir"]
    missing, unfocused, worded = [], [], []
    for path in paths:
        shown = window_text(f"Set {path}: true.")
        if KEY_RE.search(shown) or "“" not in shown:
            worded.append(f"{path}: {shown}")
        if find_control(win.panels[panel_of(path)], path) is None:
            missing.append(path)
            continue
        assert win.go_to(path), path
        qtbot.waitUntil(lambda: QApplication.focusWidget() is not None, timeout=3000)
        focus = QApplication.focusWidget()
        target = find_control(win.panels[panel_of(path)], path)
        if not (focus is target or target.isAncestorOf(focus)):
            unfocused.append(f"{path} (focus on {focus.objectName()!r})")
    assert not worded, f"messages that still speak run-file: {worded}"
    assert not missing, f"fields with no control a message could take the user to: {missing}"
    assert not unfocused, f"Go to did not focus the control: {unfocused}"


@pytest.mark.parametrize("path", ["train.distributed.num_processes", "train.distributed.strategy"])
def test_where_to_run_fields_are_found_too(make_window, qtbot, path):
    win = make_window()
    assert win.go_to(path)
