"""The export tab: each kind of export runs in the background and reports plainly."""

from __future__ import annotations

import pytest

from engine.export.testing import make_adapter_run
from studio.panels.export import ExportPanel


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    return {name: make_adapter_run(root / name, tiny_model_dir, method, seed=seed)
            for name, method, seed in (("a", "lora", 1), ("b", "lora", 2), ("pt", "prompt_tuning", 0))}


@pytest.fixture
def panel(qtbot):
    w = ExportPanel()
    qtbot.addWidget(w)
    yield w
    w.shutdown()


def _mode(panel, key):
    panel.mode.setCurrentIndex(panel.mode.findData(key))


def test_adapter_export_with_default_folder(panel, runs, qtbot):
    panel.set_run_dir(str(runs["a"]))
    assert panel.out.text().endswith("exports/adapter") and panel.export_btn.isEnabled()
    _mode(panel, "merged")
    assert panel.out.text().endswith("exports/merged-auto")
    _mode(panel, "adapter")
    with qtbot.waitSignal(panel.sig_export_finished, timeout=60_000) as blocker:
        panel.start_export()
    result = blocker.args[0]
    assert (result.path / "adapter_model.safetensors").exists()
    assert "Adapter written to" in panel.status.text() and panel.error.isHidden()
    assert panel.export_btn.isEnabled()
    # Again into the same folder: a plain error, nothing overwritten.
    with qtbot.waitSignal(panel.sig_error, timeout=60_000) as err:
        panel.start_export()
    assert "already exists" in err.args[0] and "already exists" in panel.error.text()


def test_merge_and_gguf(panel, runs, qtbot, tmp_path):
    panel.set_run_dir(runs["a"])
    _mode(panel, "merged")
    panel.dtype.setCurrentText("float32")
    panel.out.setText(str(tmp_path / "m"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=120_000):
        panel.start_export()
    assert (tmp_path / "m" / "config.json").exists()
    _mode(panel, "gguf")
    panel.gguf_type.setCurrentText("f32")
    panel.out.setText(str(tmp_path / "g"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=120_000) as blocker:
        panel.start_export()
    assert blocker.args[0].details["max_abs_logit_diff"] < 1e-3 and "verified" in panel.status.text()


def test_prompt_tuning_merge_says_it_cannot(panel, runs, qtbot, tmp_path):
    panel.set_run_dir(runs["pt"])
    _mode(panel, "merged")
    assert not panel.merge_note.isHidden() and "cannot be merged" in panel.merge_note.text()
    panel.out.setText(str(tmp_path / "pt"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=60_000) as blocker:
        panel.start_export()
    assert blocker.args[0].kind == "adapter" and "cannot be merged" in panel.status.text()


def test_weighted_merge(panel, runs, qtbot, tmp_path):
    panel.set_run_dir(runs["a"])
    _mode(panel, "weighted")
    assert not panel.export_btn.isEnabled()
    panel.add_adapter(str(runs["a"]), 0.7)
    panel.add_adapter(str(runs["b"] / "adapter"), 0.3)
    panel.combination.setCurrentText("linear")
    assert not panel.density.isEnabled()
    panel.combination.setCurrentText("ties")
    assert panel.density.isEnabled()
    panel.out.setText(str(tmp_path / "w"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=60_000) as blocker:
        panel.start_export()
    res = blocker.args[0]
    assert res.kind == "weighted" and res.details["density"] == 0.5
    assert (tmp_path / "w" / "adapter_config.json").exists()
    # A prompt-tuning adapter cannot join: the engine's sentence is shown.
    panel.add_adapter(str(runs["pt"]), 1)
    panel.out.setText(str(tmp_path / "w2"))
    with qtbot.waitSignal(panel.sig_error, timeout=60_000):
        panel.start_export()
    assert "only LoRA adapters" in panel.error.text()


def test_bad_folder(panel, tmp_path):
    panel.set_run_dir(tmp_path)
    assert "not a run folder" in panel.error.text() and not panel.export_btn.isEnabled()


def test_open_folder_after_an_export_and_a_run_picker(panel, runs, qtbot, tmp_path, monkeypatch):
    """Issue 15: there was no "Open folder" after an export, and the tab exported whatever run the
    Monitor showed; now a picker lists every run, and the folder opens in the file manager."""
    from PySide6.QtGui import QDesktopServices

    from studio.settings import Settings

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    settings = Settings()
    settings.set("recent/runs", [str(runs["a"]), str(runs["b"])])
    panel.picker.settings = settings
    panel.picker.refresh()
    qtbot.waitUntil(lambda: panel.picker.combo.count() == 2, timeout=10_000)
    panel.picker.follow(str(runs["b"]))
    qtbot.waitUntil(lambda: panel.run_dir is not None and panel.run_dir.name == "b", timeout=10_000)
    assert not panel.open_btn.isVisible()
    panel.out.setText(str(tmp_path / "exported"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=60_000):
        panel.start_export()
    assert not panel.open_btn.isHidden()
    assert panel.open_folder() and opened == [str(tmp_path / "exported")]
