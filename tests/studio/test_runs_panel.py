"""Runs can be told apart and compared (issue 15, item 10): readable default names, columns for the
data file, eval loss, duration and why a run ended (a run that failed before it started still shows
its method and model), and for a multi-selection the curves overlaid with a table of only the
settings that differ. Runs are real folders (run.yaml + events.jsonl, as the engine writes them)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import RunConfig
from studio.run_table import config_diff, curves, run_row, training_seconds
from studio.summary import data_short_name, is_auto_name, model_short_name, run_name


def make_run(root: Path, name: str, lr: float, steps: int, status: str = "finished", started: bool = True) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = RunConfig()
    cfg.data.path = "/data/alpaca.jsonl"
    cfg.train.lr = lr
    cfg.train.max_steps = steps
    cfg.output_dir = str(run)
    cfg.save(run / "run.yaml")
    rows = []
    t = 1000.0
    if started:
        rows.append({"event": "started", "time": t, "config": cfg.to_dict(), "total_steps": steps, "pid": 0})
        for s in range(1, steps + 1):
            rows.append({"event": "step", "time": t + s, "step": s, "loss": 3.0 / s, "lr": lr * (1 - s / (steps + 1))})
        rows.append({"event": "eval", "time": t + steps, "step": steps, "eval_loss": 2.0 / steps})
    if status == "failed":
        rows.append({"event": "failed", "time": t + steps + 1, "error": "alpaca.jsonl line 3: not valid JSON. Fix "
                     "the line, or set data.skip_bad_lines: true to skip bad lines.", "hint": "Fix it."})
    else:
        rows.append({"event": status, "time": t + steps + 1, "run_dir": str(run), "adapter_dir": str(run / "adapter"),
                     "step": steps, "metrics": {"final_loss": 3.0 / max(steps, 1)}, "reason": "stop requested"})
    (run / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_readable_default_run_names():
    name = run_name("demo", "lora", "data/alpaca.jsonl", when=0)
    assert name.startswith("smollm2-lora-alpaca-") and is_auto_name(name)
    assert model_short_name("Qwen/Qwen2.5-0.5B-Instruct") == "qwen2.5"
    assert data_short_name("resources/demo/train.jsonl") == "demo"  # a generic stem: the folder says more
    assert not is_auto_name("my-run") and is_auto_name(name + "-2")


def test_a_run_that_failed_before_it_started_shows_its_method_model_and_why(tmp_path):
    run = make_run(tmp_path, "early", 1e-3, 0, status="failed", started=False)
    row = run_row(run)
    assert row["status"] == "failed" and row["method"] == "lora" and row["model"] == "demo"
    assert row["data"] == "alpaca.jsonl" and row["reason"].startswith("alpaca.jsonl line 3: not valid JSON")


def test_rows_have_eval_loss_and_duration_over_resumed_parts(tmp_path):
    run = make_run(tmp_path, "ok", 1e-3, 4)
    row = run_row(run)
    assert row["eval_loss"] == 0.5 and row["duration"] == 5.0 and row["reason"] == ""
    events = [{"event": "started", "time": 0}, {"event": "step", "time": 10}, {"event": "stopped", "time": 11},
              {"event": "started", "time": 500}, {"event": "finished", "time": 520}]
    assert training_seconds(events) == 31.0  # the pause between the parts does not count
    assert curves(run)["loss"][0] == [1, 2, 3, 4] and curves(run)["eval_loss"] == [[4], [0.5]]


def test_config_diff_lists_only_what_differs():
    a, b = RunConfig(), RunConfig()
    b.train.lr = 1e-3
    b.output_dir = "elsewhere"
    rows = dict(config_diff([a.to_dict(), b.to_dict()]))
    assert list(rows) == ["train.lr"] and rows["train.lr"] == [a.train.lr, 1e-3]


def test_multi_select_overlays_curves_and_shows_the_differences(qtbot, tmp_path):
    from studio.panels.runs import COLUMNS, RunsPanel
    from studio.settings import Settings

    one = make_run(tmp_path / "runs", "one", 1e-3, 6)
    two = make_run(tmp_path / "runs", "two", 5e-4, 4, status="stopped")
    settings = Settings()
    settings.set("recent/runs", [str(one), str(two)])
    panel = RunsPanel(settings)
    qtbot.addWidget(panel)
    panel.show()
    panel.compare.build_plots()
    panel.refresh()
    qtbot.waitUntil(lambda: len(panel.rows) == 2, timeout=10_000)
    assert {"Data", "Eval loss", "Duration", "Why"} <= set(COLUMNS)
    item = panel.tree.topLevelItem([i for i in range(2) if panel.tree.topLevelItem(i).text(0) == "two"][0])
    assert item.text(COLUMNS.index("Why")) == "stop requested" and item.text(COLUMNS.index("Data")) == "alpaca.jsonl"
    assert not panel.compare.isVisible()
    panel.select([str(one), str(two)])
    qtbot.waitUntil(lambda: panel.compare.isVisible(), timeout=10_000)
    labels = [panel.compare.table.verticalHeaderItem(i).text() for i in range(panel.compare.table.rowCount())]
    assert labels == ["Max steps (Training panel)", "Learning rate (Training panel)"]
    assert sorted(panel.compare.points("loss")) == [4, 6] and sorted(panel.compare.points("lr")) == [4, 6]
    assert sorted(panel.compare.points("eval_loss")) == [1, 1]
    panel.select([str(one)])
    assert not panel.compare.isVisible() and panel.btn_open.isEnabled()
