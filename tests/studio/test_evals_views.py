"""The studio's side of issue 16: the Samples view, the monitor's warnings (marked at their step)
and forgetting line, the TensorBoard button, an imported run's curves, the run list's columns."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from studio.watch import RunWatch


def _eval(step, answers, loss=1.0, **metrics):
    return {"event": "eval", "step": step, "eval_loss": loss, "metrics": {"eval_loss": loss, **metrics},
            "samples": [{"prompt": f"Q{i}?", "reference": f"Ahoy! A{i} ⚓", "answer": a} for i, a in enumerate(answers)]}


def test_changed_words_are_the_new_ones():
    from studio.panels.samples import changed_words

    assert changed_words(None, "a b") == [("a", False), ("b", False)]
    assert changed_words("The sky is blue.", "Ahoy! The sky is blue, matey.") == [
        ("Ahoy!", True), ("The", False), ("sky", False), ("is", False), ("blue,", True), ("matey.", True)]


def test_samples_view_shows_prompt_reference_and_each_step(qtbot):
    from studio.panels.samples import HIGHLIGHT, SamplesPanel

    panel = SamplesPanel()
    qtbot.addWidget(panel)
    assert not panel.view.isVisible() and panel.empty.isVisibleTo(panel)
    panel.on_event({"event": "started", "resumed_from_step": 0})
    panel.on_event(_eval(5, ["The sky is blue.", "Paris."], eval_persona_score=0.0))
    panel.on_event({"event": "step", "step": 6})
    panel.on_event(_eval(10, ["Ahoy! The sky is blue ⚓", "Paris."], eval_persona_score=0.5))
    html = panel.view.toHtml()
    for text in ("Q0?", "Q1?", "Ahoy! A0 ⚓", "step 5", "step 10", "persona score 0.50", "The sky is blue."):
        assert text in html, text
    assert panel.summary.text() == "2 prompts × 2 evaluations (last: step 10)"
    from studio.panels.samples import samples_html

    raw = samples_html(panel.evals)
    assert raw.count(f"background:{HIGHLIGHT}") == 3  # "Ahoy!", "blue" (was "blue.") and "⚓"; not "Paris."
    panel.on_event(_eval(10, ["x", "y"]))  # a re-evaluation of a step replaces its row
    assert [e["step"] for e in panel.evals] == [5, 10]


def test_watch_warns_on_grad_spikes_and_overfitting():
    w = RunWatch()
    out = []
    for step in range(1, 31):
        out += w.feed({"event": "step", "step": step, "loss": 3.0 - step * 0.05,
                       "grad_norm": 40.0 if step == 12 else 1.0 + 0.01 * step})
        if step % 5 == 0:
            out += w.feed({"event": "eval", "step": step, "eval_loss": {5: 2.0, 10: 1.8, 15: 1.9, 20: 2.0, 25: 2.2,
                                                                           30: 2.3}[step]})
    kinds = [(x.kind, x.step, x.plot) for x in out]
    assert kinds == [("grad_spike", 12, "grad"), ("overfitting", 20, "loss")], kinds
    assert "1.8 → 2" in out[1].message and "patience" in out[1].message
    w2 = RunWatch()  # eval loss rising with the train loss rising too: not overfitting, not warned
    for step in range(1, 16):
        w2.feed({"event": "step", "step": step, "loss": 1.0 + step, "grad_norm": 1.0})
        if step % 5 == 0:
            w2.feed({"event": "eval", "step": step, "eval_loss": float(step)})
    assert w2.warnings == []


def test_monitor_marks_warnings_and_shows_forgetting(qtbot):
    from studio.panels.monitor import MonitorPanel

    panel = MonitorPanel()
    qtbot.addWidget(panel)
    panel.build_plots()
    panel.on_event({"event": "started", "total_steps": 30, "resumed_from_step": 0})
    for step in range(1, 21):
        panel.on_event({"event": "step", "step": step, "loss": 3.0 - step * 0.05, "lr": 1e-3,
                        "grad_norm": 50.0 if step == 12 else 1.0})
        if step % 5 == 0:
            panel.on_event({"event": "eval", "step": step, "eval_loss": {5: 2.0, 10: 1.8, 15: 1.9, 20: 2.0}[step]})
    assert panel.marker_steps("grad") == [12] and panel.marker_steps("loss") == [20]
    assert panel.warning_label.isVisibleTo(panel) and "overfitting" in panel.warning_label.text()
    panel.on_event({"event": "finished", "step": 20, "forgetting": {
        "general_nll_base": 2.0, "general_nll_tuned": 2.1, "changed_answers": 5, "n_prompts": 16,
        "nll_change_pct": 5.0}})
    assert panel.forgetting_label.text().startswith(
        "Forgetting check: general-text NLL +5.0% / answers changed on 5 of 16 general prompts")
    panel.show_run("/elsewhere")  # another run: its own warnings only
    assert panel.marker_steps("grad") == [] and not panel.forgetting_label.isVisibleTo(panel)
    panel.shutdown()


def test_an_imported_trainer_run_draws_its_curves_in_the_monitor(qtbot, tmp_path):
    from engine.events import read_events
    from engine.history.importer import import_trainer_run
    from studio.panels.monitor import MonitorPanel

    out = tmp_path / "plain"
    out.mkdir()
    history = [{"step": s, "epoch": s / 4, "loss": 3.0 - 0.1 * s, "learning_rate": 1e-3, "grad_norm": 1.0}
               for s in range(1, 5)] + [{"step": 4, "eval_loss": 2.5, "eval_runtime": 0.1}]
    (out / "trainer_state.json").write_text(json.dumps({"global_step": 4, "max_steps": 4, "log_history": history}))
    row = import_trainer_run(out)
    panel = MonitorPanel()
    qtbot.addWidget(panel)
    panel.build_plots()
    for ev in read_events(Path(row["run_dir"]) / "events.jsonl"):
        panel.on_event(ev)
    panel.refresh_all()
    assert panel.curve_points("loss_raw") == 4 and panel.curve_points("eval") == 1 and panel.curve_points("lr") == 4
    panel.shutdown()


def test_runs_list_shows_best_and_forgetting(qtbot, tmp_path):
    from engine.runs import RunIndex
    from studio.panels.runs import COLUMNS, RunsPanel

    run = tmp_path / "r"
    run.mkdir()
    events = [{"event": "started", "time": 1.0, "config": {"method": {"name": "lora"}}, "pid": 0},
              {"event": "finished", "time": 2.0, "step": 10, "metrics": {"best_metric": "eval_loss", "best_value": 1.25,
                                                                          "best_step": 8},
               "forgetting": {"general_nll_base": 2.0, "general_nll_tuned": 2.2, "changed_answers": 3, "n_prompts": 16}}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    RunIndex().record(run)
    panel = RunsPanel()
    qtbot.addWidget(panel)
    panel.refresh()
    qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1, timeout=10000)
    item = panel.tree.topLevelItem(0)
    assert item.text(COLUMNS.index("Best")) == "loss 1.25 @ 8"
    assert item.text(COLUMNS.index("Forgetting")) == "NLL +10.0%, 3/16 changed"


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_button_serves_the_run_folder_and_stops(qtbot, tmp_path):
    from studio.panels.monitor import MonitorPanel

    panel = MonitorPanel()
    qtbot.addWidget(panel)
    assert not panel.btn_tensorboard.isEnabled()
    panel.show_run(str(tmp_path))
    assert panel.btn_tensorboard.isEnabled()
    with qtbot.waitSignal(panel.tensorboard.sig_url, timeout=120000) as got:
        panel.btn_tensorboard.click()
    url = got.args[0]
    assert url.startswith("http://") and url in panel.tb_link.text()
    with urllib.request.urlopen(url, timeout=30) as resp:  # TensorBoard itself answers
        assert resp.status == 200
    proc = panel.tensorboard.proc
    panel.shutdown()
    assert panel.tensorboard.proc is None and proc.state() == proc.ProcessState.NotRunning
    assert sys.executable  # the helper ran with this interpreter (python -m tensorboard.main)


def test_eval_and_train_sections_appear_in_the_forms_by_themselves(make_window):
    import dataclasses

    from PySide6.QtWidgets import QWidget

    from engine.config import DivergenceConfig, EarlyStoppingConfig, EvalConfig

    win = make_window()
    for klass, prefix in ((EvalConfig, "eval"), (EarlyStoppingConfig, "train.early_stopping"),
                          (DivergenceConfig, "train.divergence")):
        for f in dataclasses.fields(klass):
            assert win.findChild(QWidget, f"field:{prefix}.{f.name}") is not None, f"{prefix}.{f.name}"
    assert win.findChild(QWidget, "field:train.report_to") is not None
    training = win.panels["training"]
    training.eval_form.editors["metric"].widget.setText("engine.data.demo:persona_score")
    training.sections["early_stopping"].editors["patience"].widget.setValue(3)
    cfg, errors = win.config_model.validate_now()
    assert cfg.eval.metric == "engine.data.demo:persona_score" and cfg.train.early_stopping.patience == 3
    training.eval_form.editors["samples"].widget.setValue(2)
    win.config_model.set_config(cfg)  # a config shown in the forms comes back unchanged
    assert win.config_model.validate_now()[0] == cfg


def _run_folder(root: Path, name: str, method: str, losses: list[float], evals: dict[int, float]) -> Path:
    run = root / name
    run.mkdir()
    events = [{"event": "started", "time": 1.0, "method": method, "config": {"method": {"name": method}}, "pid": 0,
               "total_steps": len(losses)}]
    for step, loss in enumerate(losses, start=1):
        events.append({"event": "step", "time": 1.0 + step, "step": step, "total_steps": len(losses), "loss": loss})
        if step in evals:
            events.append({"event": "eval", "time": 1.0 + step, "step": step, "eval_loss": evals[step]})
    events.append({"event": "finished", "time": 99.0, "step": len(losses), "metrics": {}})
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


def test_the_runs_overlay_draws_two_runs_on_the_monitor(make_window, qtbot, tmp_path):
    """Runs › select two › Overlay in monitor: both runs' loss curves (and eval points) on the
    monitor's loss plot, named in its legend; Clear overlay removes them."""
    from engine.runs import RunIndex

    a = _run_folder(tmp_path, "run-a", "lora", [3.0, 2.5, 2.0, 1.8], {2: 2.6, 4: 2.1})
    b = _run_folder(tmp_path, "run-b", "ia3", [3.0, 2.9, 2.8, 2.7, 2.6, 2.5], {3: 2.9, 6: 2.7})
    for run in (a, b):
        RunIndex().record(run)
    win = make_window()
    runs, monitor = win.panels["runs"], win.panels["monitor"]
    monitor.build_plots()
    runs.refresh()
    qtbot.waitUntil(lambda: runs.tree.topLevelItemCount() == 2, timeout=10000)
    runs.tree.selectAll()
    assert sorted(runs.selected_runs()) == sorted([str(a), str(b)]) and runs.btn_overlay.isEnabled()
    runs.btn_overlay.click()
    qtbot.waitUntil(lambda: len(monitor.overlays) == 2, timeout=10000)
    assert sorted(monitor.overlay_names()) == ["run-a (lora)", "run-b (ia3)"]
    by_name = {o["curve"]["name"]: o for o in monitor.overlays}
    train_b, eval_b = by_name["run-b"]["items"]
    assert len(train_b.xData) == 6 and list(eval_b.xData) == [3, 6] and list(eval_b.yData) == [2.9, 2.7]
    legend = [label.text for _, label in monitor.plots["loss"].getPlotItem().legend.items]
    assert "run-a (lora)" in legend and "run-b (ia3)" in legend
    assert monitor.plots["loss"].getViewBox().viewRange()[0][1] >= 6  # the longer run fits in the view
    assert monitor.btn_clear_overlay.isVisibleTo(monitor)
    monitor.btn_clear_overlay.click()
    assert monitor.overlays == [] and train_b not in monitor.plots["loss"].getPlotItem().items
