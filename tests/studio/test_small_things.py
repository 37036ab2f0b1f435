"""The smaller things a newcomer met (issue 15): no "0 / 1 steps" before a run, no "Ready to start"
while one trains, methods grouped by what they are, the loss legend off the curve, and the model
facts and estimate of the last launch shown at once (marked as cached)."""

from __future__ import annotations

from engine.methods import get_method


def test_no_step_count_before_the_run_says_how_many(qtbot):
    from studio.panels.monitor import MonitorPanel

    mon = MonitorPanel()
    qtbot.addWidget(mon)
    assert mon.progress.text() == ""
    mon.on_event({"event": "started", "time": 1.0, "total_steps": 30, "resumed_from_step": 0})
    assert mon.progress.text() == "0 / 30 steps"


def test_the_loss_legend_does_not_cover_the_curve(qtbot):
    from studio.panels.monitor import MonitorPanel

    mon = MonitorPanel()
    qtbot.addWidget(mon)
    mon.build_plots()
    item = mon.plots["loss"].getPlotItem()
    assert item.legend is None  # the curves are named in the title, in their colours
    assert "train" in item.titleLabel.text and "eval" in item.titleLabel.text
    mem = mon.plots["mem"].getPlotItem().getAxis("left")
    assert mem.labelText == "GiB" and not mem.autoSIPrefix  # never pyqtgraph's "GB"


def test_methods_are_grouped_by_what_they_declare(qtbot):
    from studio.panels.method import GROUPS, MethodPanel, method_group

    panel = MethodPanel()
    qtbot.addWidget(panel)
    names = panel.method_names()
    assert sorted(names) == sorted(set(names)) and len(names) > 40
    headings = [panel.combo.itemText(i) for i in range(panel.combo.count()) if panel.combo.itemData(i) is None]
    assert [h.strip("— ") for h in headings] == [title for _, title in GROUPS]
    heading = next(i for i in range(panel.combo.count()) if panel.combo.itemData(i) is None)
    assert not panel.combo.model().item(heading).isEnabled()
    group = {n: method_group(get_method(n)) for n in names}
    recommended = [n for n, g in group.items() if g == "recommended"]
    assert recommended[0] == "lora" and len(recommended) == 3  # LoRA, QLoRA, DoRA
    assert all(get_method(n).prompt_based for n, g in group.items() if g == "prompt")
    assert group["full"] == group["bitfit"] == "selective" and group["bottleneck"] == "adapters"


def test_status_bar_does_not_say_ready_while_a_run_trains(make_window, qtbot, tmp_path, fake_engine):
    from engine.config import RunConfig
    from studio.supervisor import RunSupervisor

    win = make_window(supervisor=RunSupervisor(command=fake_engine(steps=200, delay=0.02)))
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "busy")
    win.config_model.set_config(cfg)
    win.config_model.validate_now = lambda: (cfg, {})  # the demo model need not exist here
    with qtbot.waitSignal(win.runs.sig_event, timeout=20_000, check_params_cb=lambda ev: ev.get("step") == 2):
        assert win.runs.start()
    assert win.status.validity.text().startswith("A run is in progress")
    assert "Ready to start" not in win.status.validity.text()
    win.runs.stop()
    qtbot.waitUntil(lambda: not win.runs.is_active(), timeout=20_000)
    assert "A run is in progress" not in win.status.validity.text()


def test_last_launchs_facts_show_at_once_marked_as_cached(qtbot, tmp_path):
    from engine.config import ModelConfig
    from studio import fact_cache
    from studio.panels.model import ModelPanel

    folder = str(tmp_path / "some-model")
    info = {"architecture": "LlamaForCausalLM", "model_type": "llama", "total_params": 1000, "dtype": "float32",
            "has_chat_template": True, "display": folder, "has_weights": True, "num_layers": 2, "hidden_size": 64}
    fact_cache.shared().put("inspect", [folder, False, True], info)
    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.set_values(ModelConfig(name_or_path=folder))
    # at once, before any helper process could have answered
    assert panel.info == info and panel.cached
    assert "Cached from the last launch" in panel.status.text()
    assert panel.grid.values["Architecture"].text().startswith("LlamaForCausalLM")
    # then the helper answers (here: the folder does not exist) and replaces the cached facts
    qtbot.waitUntil(lambda: not panel.cached, timeout=240_000)
    assert "Cached" not in panel.status.text()


def test_last_launchs_estimate_shows_at_once_marked_as_cached(qtbot, tiny_config):
    from studio import fact_cache
    from studio.panels.estimate import EstimatePanel

    cfg = tiny_config()
    d = cfg.to_dict()
    d.pop("output_dir")
    out = {"components": {"weights": 3 << 30}, "labels": {"weights": "Frozen weights"}, "device_total": 3 << 30,
           "gpu_bytes": 8 << 30, "verdict": "fits", "on_cpu": True, "peak_allocated": 1 << 30,
           "total_params": 1000, "trainable_params": 10, "adapter_bytes": 40}
    fact_cache.shared().put("estimate", [repr(d), None], out)
    panel = EstimatePanel()
    qtbot.addWidget(panel)
    panel.update_estimate(cfg)
    assert panel.cached and "Cached from the last launch" in panel.summary.text()
    assert panel.verdict.text().startswith("Fits: peak 3 GiB")
    qtbot.waitUntil(lambda: not panel.cached, timeout=240_000)  # the helper's own estimate replaces it
    assert "Cached" not in panel.summary.text()
    panel.time.shutdown()


def test_step_labels_never_run_together_on_a_small_plot(qtbot):
    """At 1280×720 the Monitor's small plots are ~100 px wide: pyqtgraph put "100", "200" and "300"
    24 px apart, drawn into one another ("100200300")."""
    import math

    from studio.plots import MIN_LABEL_GAP_PX, SpacedAxis

    axis = SpacedAxis("bottom")
    for size, top in ((95, 400), (120, 24), (150, 2000), (60, 7)):
        major = axis.tickSpacing(0, top, size)[0][0]
        assert major * size / top >= MIN_LABEL_GAP_PX, (size, top, major)
        mantissa = major / 10 ** math.floor(math.log10(major))
        assert round(mantissa, 6) in (1, 2, 5), major  # pyqtgraph's 1-2-5 steps
    wide = axis.tickSpacing(0, 400, 700)
    assert wide == super(SpacedAxis, axis).tickSpacing(0, 400, 700)  # room enough: pyqtgraph's own ticks
