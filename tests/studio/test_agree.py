"""Panels agree with each other and with the engine (issue 15, item 9): the verdict is judged against
the device the Device box shows; IA³'s "Auto picks" are the modules the engine adapts; a full
fine-tune has one saved size; QLoRA's help matches the CPU; the Parameters box never shows the
previous settings' numbers; the live memory is the peak, labelled, in GiB; values a practitioner
would question are warned about without blocking Start."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from engine.methods import get_method

JOB_TIMEOUT_MS = 240_000


def test_the_verdict_is_judged_against_the_device_shown_after_a_relaunch(qtbot, tiny_config, tmp_path):
    """Issue 15: after a relaunch the Device box said "T4 (15 GiB)" while the verdict was judged
    against this machine's RAM (the saved choice only existed once the GPU list had arrived)."""
    from studio.panels.estimate import EstimatePanel
    from studio.settings import Settings

    settings = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.set("estimate/gpu", "T4")
    panel = EstimatePanel(settings)
    qtbot.addWidget(panel)
    panel.update_estimate(tiny_config())
    qtbot.waitUntil(lambda: panel.gpu.currentData() == "T4", timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "T4" in panel.verdict.text() and not panel.cached, timeout=JOB_TIMEOUT_MS)
    assert "RAM" not in panel.verdict.text() and "15" in panel.verdict.text()
    panel.time.shutdown()


def test_ia3_auto_picks_are_what_the_engine_adapts(qtbot, tiny_model_dir):
    from peft.tuners.ia3 import IA3Layer
    from transformers import AutoModelForCausalLM

    from engine.config import RunConfig
    from engine.methods import apply_method
    from studio import jobs
    from studio.panels.method import MethodPanel

    info = jobs.inspect(None, str(tiny_model_dir), False, True)
    panel = MethodPanel()
    qtbot.addWidget(panel)
    panel.set_model_info(info)
    panel.combo.setCurrentIndex(panel.combo.findData("ia3"))
    shown = panel.targets.note.text().removeprefix("Auto picks: ").split(", ")
    cfg = RunConfig.from_dict({"model": {"name_or_path": str(tiny_model_dir)}, "method": {"name": "ia3"}})
    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    trained = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, IA3Layer)})
    assert sorted(shown) == trained == ["down_proj", "k_proj", "v_proj"]
    panel.combo.setCurrentIndex(panel.combo.findData("lora"))
    assert len(panel.targets.note.text().split(", ")) == 7  # LoRA's auto is its own


@pytest.mark.parametrize("gpu", [None, "24GB"])
def test_a_full_fine_tune_has_one_saved_size(tiny_config, gpu):
    """The method panel's size (count job) and the estimate's are one figure for the same device
    (issue 15: 257 MiB in one panel, 513 MiB in the other)."""
    from studio import jobs

    cfg = tiny_config()
    d = cfg.to_dict()
    d["method"] = {"name": get_method("full").name}
    counted = jobs.count(None, d, gpu)
    estimated = jobs.estimate(None, d, gpu)
    assert counted["adapter_bytes"] == estimated["adapter_bytes"] > 0


def test_qlora_help_matches_the_cpu():
    from studio.panels.method import caveat_html

    text = caveat_html(get_method("qlora"))
    assert "needs a CUDA GPU" not in text and "CPU" in text


def test_the_parameters_box_never_shows_other_settings_numbers(qtbot, tiny_config):
    from studio.panels.estimate import EstimatePanel
    from studio.panels.method import MethodPanel

    panel = EstimatePanel()
    qtbot.addWidget(panel)
    panel.update_estimate(tiny_config())
    qtbot.waitUntil(lambda: panel.counts.values["Trainable"].text() not in ("—", "") and
                    "updating" not in panel.counts.values["Trainable"].text(), timeout=JOB_TIMEOUT_MS)
    first = panel.counts.values["Trainable"].text()
    cfg = tiny_config()
    cfg.method = get_method("ia3").params()
    panel.update_estimate(cfg)
    assert panel.counts.values["Trainable"].text().endswith("(updating…)")  # at once, not later
    qtbot.waitUntil(lambda: "updating" not in panel.counts.values["Trainable"].text(), timeout=JOB_TIMEOUT_MS)
    assert panel.counts.values["Trainable"].text() != first
    panel.time.shutdown()
    assert MethodPanel  # the method panel's own count follows its method (test_method_panel)


def test_live_memory_is_the_labelled_peak_in_gib():
    from studio.panels.estimate import gpu_choices
    from studio.panels.monitor import GIB, PLOTS, memory_label, memory_now, memory_peak

    cpu = {"mem_allocated": 1 << 30, "mem_reserved": None, "mem_peak": 3 << 30, "mem_peak_reserved": None}
    gpu = {"mem_allocated": 1 << 30, "mem_reserved": 2 << 30, "mem_peak": 3 << 30, "mem_peak_reserved": 4 << 30}
    assert memory_label(cpu) == "Peak RSS (CPU)" and memory_peak(cpu) == 3 << 30 and memory_now(cpu) == 1 << 30
    assert memory_label(gpu) == "Peak reserved (GPU)" and memory_peak(gpu) == 4 << 30
    assert memory_label({"mem_allocated": 5}) == "Memory now (RSS)"  # a run recorded before peaks
    assert PLOTS["mem"] == "Memory" and GIB == 2 ** 30  # the plot's axis says GiB (test_small_things)
    assert not any(label.endswith(" GB GPU") for label, _ in gpu_choices())


def test_sanity_warnings_without_blocking(make_window, qtbot, tiny_config):
    win = make_window()
    cfg = tiny_config()
    cfg.method.r = 64          # the tiny model's hidden size
    cfg.train.lr = 5.0
    cfg.train.warmup_ratio = 1.0
    win.config_model.set_config(cfg)
    qtbot.waitUntil(lambda: win.panels["model"].info is not None, timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(lambda: {"method.r", "train.lr", "train.warmup_ratio"} <= set(win.config_model.warnings),
                    timeout=10_000)
    assert "hidden size (64)" in win.panels["method"].form.warning_text("r")
    assert "far above" in win.panels["training"].form.warning_text("lr")
    qtbot.waitUntil(win.act_start.isEnabled, timeout=JOB_TIMEOUT_MS)  # warnings never block
    assert "Ready to start — ⚠" in win.status.validity.text()


def test_out_of_range_input_is_marked_not_changed(make_window, qtbot):
    from engine.config import RunConfig

    win = make_window()
    win.config_model.set_config(RunConfig())
    batch = win.panels["training"].form.editors["batch_size"].widget
    batch.lineEdit().selectAll()
    qtbot.keyClicks(batch.lineEdit(), "-4")
    batch.interpretText()
    qtbot.waitUntil(lambda: "train.batch_size" in win.config_model.errors, timeout=3000)
    assert batch.value() == -4 and batch.text() == "-4"
    assert not win.act_start.isEnabled()
    length = win.panels["data"].form.editors["max_length"].widget
    length.lineEdit().selectAll()
    qtbot.keyClicks(length.lineEdit(), "99999999")
    length.interpretText()
    qtbot.waitUntil(lambda: "data.max_length" in win.config_model.errors, timeout=3000)
    assert length.value() == 99999999
    length.stepBy(1)  # the arrows stop at the bound
    assert length.value() == 1_048_576


def test_playground_spin_boxes_mark_bad_input(qtbot):
    from studio.panels.playground import PlaygroundPanel

    panel = PlaygroundPanel()
    qtbot.addWidget(panel)
    panel.temperature.setValue(5)
    assert panel.temperature.value() == 5 and not panel.temperature.is_valid()
    assert "Temperature must be between 0 and 2" in panel.generate_btn.toolTip()
    assert not panel.generate_btn.isEnabled()
    panel.shutdown()
