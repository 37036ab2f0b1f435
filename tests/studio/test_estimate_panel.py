"""The estimate panel: the engine's estimate through the job helper, for this machine (its CPU and
RAM when there is no GPU) or a chosen GPU, with the breakdown and the verdict."""

from __future__ import annotations

import pytest

from studio.panels.estimate import EstimatePanel


@pytest.fixture
def panel(qtbot):
    p = EstimatePanel()
    qtbot.addWidget(p)
    yield p
    p.time.shutdown()


def _settle(qtbot, panel, before: str):
    qtbot.waitUntil(lambda: panel.verdict.text() not in ("—", before) and "Estimating" not in panel.verdict.text(),
                    timeout=120_000)


def test_this_machine_without_a_gpu_is_its_cpu_and_ram(qtbot, panel, tiny_config):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 'This machine' means it")
    panel.update_estimate(tiny_config())
    _settle(qtbot, panel, "—")
    assert panel.gpu.currentText() == "This machine (detected)"
    assert "RAM" in panel.verdict.text() and panel.verdict.property("verdict") == "fits"
    legend = panel.legend.text()
    assert "Runtime (Python, PyTorch, data)" in legend and "CUDA context" not in legend
    assert "trains on this machine's CPU" in panel.summary.text()
    assert "float32" in panel.notes.text()


def test_a_chosen_gpu_is_judged_as_a_gpu(qtbot, panel, tiny_config):
    panel.update_estimate(tiny_config())
    _settle(qtbot, panel, "—")
    first = panel.verdict.text()
    i = panel.gpu.findData("24GB")
    assert i > 0
    panel.gpu.setCurrentIndex(i)
    qtbot.waitUntil(lambda: "24 GiB" in panel.verdict.text(), timeout=120_000)
    assert panel.verdict.text() != first and "RAM" not in panel.verdict.text()
    assert "CUDA context" in panel.legend.text() and "Runtime" not in panel.legend.text()
    assert "bfloat16" in panel.notes.text()


def test_the_estimates_assumptions_are_shown_in_the_windows_words(qtbot, panel, tiny_config):
    """Issue 14 put the estimate's assumptions (attention, loss, packing, each component's dtype)
    in the engine's result; the studio's job dropped them, so the panel never showed them."""
    from studio.wording import KEY_RE

    panel.update_estimate(tiny_config())
    _settle(qtbot, panel, "—")
    notes = panel.notes.text()
    assert "assumed: attention" in notes and "packing" in notes, notes
    assert not KEY_RE.search(notes + panel.summary.text()) and "max_length" not in panel.summary.text()


def test_a_refusal_names_its_control_once(make_window, qtbot, tiny_config):
    """The walk of 2026-11-30: Full fine-tuning on an nf4 base turned Start off with “• “Quantization”
    (Model panel): “Quantization” (Model panel): Full fine-tuning … cannot work with …”: the
    estimator's refusal kept its own field prefix under the line that already names the control."""
    from engine.config import RunConfig

    win = make_window()
    cfg = RunConfig.from_dict({**tiny_config().to_dict(), "method": {"name": "full"},
                               "model": {**tiny_config().to_dict()["model"], "quantization": "nf4"}}, "test")
    win.config_model.set_config(cfg)
    qtbot.waitUntil(lambda: "model.quantization" in win.config_model.errors, timeout=120_000)
    msg = win.config_model.errors["model.quantization"]
    assert "cannot work with" in msg and not msg.startswith(("model.quantization", "“Quantization”")), msg
    tip = win.act_start.toolTip()
    assert "“Quantization” (Model panel): “Quantization” (Model panel)" not in tip, tip
    assert "“Quantization” (Model panel): “Quantization” (Model panel)" not in win.status.validity.text()
