"""The Data tab's report (issue 13): what the engine used and ignored and why, every record not
trained as written by line, statistics over every source, one-click fixes in the window's words,
and an event loop that keeps turning while a large file is read."""

from __future__ import annotations

import json
import time

from PySide6.QtCore import QTimer

from studio.data_jobs import merge_statistics
from studio.data_report_view import suggest_fixes
from tests.studio.conftest import TINY_ROWS

TIMEOUT_MS = 300_000  # the data helper imports transformers, then reads and prepares


def _report(win):
    return win.panels["data"].report


def test_report_over_every_source_with_problems_by_line_and_a_fix(make_window, qtbot, tiny_config, tmp_path):
    a = tmp_path / "chat.jsonl"
    lines = [json.dumps(r) for r in TINY_ROWS[:6]]
    lines.insert(2, "{this is not json")                       # line 3
    a.write_text("\n".join(lines) + "\n", encoding="utf-8")
    b = tmp_path / "alpaca.jsonl"
    b.write_text("".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}!", "notes": "x"}) + "\n"
                         for i in range(9)), encoding="utf-8")
    win = make_window()
    cfg = tiny_config()
    cfg.data.sources = [{"path": str(a), "weight": 1}, {"path": str(b), "weight": 2}]
    win.config_model.set_config(cfg)
    view = _report(win)
    qtbot.waitUntil(lambda: view.result.get("stage") in ("report", "error"), timeout=TIMEOUT_MS)
    assert view.result["stage"] == "report", view.result
    # Both sources, not only the first: rows in the Sources table and the statistics' sum.
    assert view.sources.rowCount() == 2
    assert [view.sources.item(r, 0).text() for r in range(2)] == [a.name, b.name]
    assert [view.sources.item(r, 0).toolTip() for r in range(2)] == [str(a), str(b)]
    stats = view.result["statistics"]
    assert stats["records"] == 7 + 9 and stats["skipped"] == 1
    assert [s["records"] for s in view.result["sources"]] == [7, 9]
    assert sum(view.hist_counts) == 6 + 9   # the lengths of every record that rendered, both files
    assert view.sources.item(0, 1).text() == "messages" and view.sources.item(1, 1).text() == "alpaca"
    # What was ignored and why, per column.
    cols_b = view.columns_line(1)
    assert cols_b.startswith("alpaca.jsonl — ")
    assert "used: instruction" in cols_b and "ignored: notes (9 records)" in cols_b and "alpaca format" in cols_b
    # The dropped record by line, with its reason.
    rows = {view.problems.item(r, 0).text(): (view.problems.item(r, 1).text(), view.problems.item(r, 2).text())
            for r in range(view.problems.rowCount())}
    assert rows["chat.jsonl line 3"][0] == "skipped" and "JSON" in rows["chat.jsonl line 3"][1]
    # The fix names the control, not the run-file key, and changes the control.
    btn = view.fix_button("data.skip_bad_lines")
    assert btn is not None and btn.text() == "Skip the 1 bad record"
    assert "“Skip bad lines” (Data tab › Advanced)" in btn.toolTip() and "data.skip_bad_lines" not in btn.toolTip()
    panel = win.panels["data"]
    assert panel.form.editors["skip_bad_lines"].raw() is False
    btn.click()
    assert panel.form.editors["skip_bad_lines"].raw() is True
    qtbot.waitUntil(lambda: win.config_model.config.data.skip_bad_lines, timeout=5000)
    assert view.fix_button("data.skip_bad_lines") is None


def test_preference_data_offers_the_sft_mapping(make_window, qtbot, tiny_config, tmp_path):
    path = tmp_path / "pref.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                            for i in range(8)), encoding="utf-8")
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(path)
    win.config_model.set_config(cfg)
    view = _report(win)
    qtbot.waitUntil(lambda: view.result.get("stage") in ("report", "error"), timeout=TIMEOUT_MS)
    assert view.result["stage"] == "error" and "cannot be trained" in view.status.text()
    btn = view.fix_button("data.columns")
    assert btn is not None and "“Column mapping” (Data tab)" in btn.toolTip()
    btn.click()
    panel = win.panels["data"]
    assert panel.mapping.mapping == view.result["detected"]["sft_mapping"]
    qtbot.waitUntil(lambda: win.config_model.config.data.columns == panel.mapping.mapping, timeout=5000)
    # The report follows the new mapping: the file is now trained, the rejected answers ignored.
    qtbot.waitUntil(lambda: view.result.get("stage") == "report", timeout=TIMEOUT_MS)
    assert view.result["report"]["counts"]["train_examples"] > 0
    assert "rejected" in view.columns_line(0).split("ignored:")[1]


def test_statistics_never_block_the_event_loop(make_window, qtbot, tiny_config, tmp_path):
    """A 50,000-row file: the statistics fill in while a 50 ms timer keeps ticking (no gap over
    200 ms beyond its own interval). The preparation's own duration is not asserted."""
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(50_000):
            fh.write(json.dumps({"instruction": f"What is {i} plus {i}?", "input": "", "output": f"It is {2 * i}."})
                     + "\n")
    win = make_window()
    qtbot.waitUntil(win.plots_ready, timeout=60_000)   # the window's own start-up is not what is measured
    view = _report(win)
    ticks: list[float] = []
    partials: list[int] = []
    at_preview: list[int] = []   # records the statistics had read when the first examples showed
    win.panels["data"]._job.sig_result.connect(
        lambda _r: at_preview.append((view.result.get("total") or {}).get("records", 0)))
    view.sig_updated.connect(lambda: partials.append((view.result.get("total") or {}).get("records", 0)))
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    cfg = tiny_config()
    cfg.data.path = str(path)
    timer.start()
    try:
        win.config_model.set_config(cfg)
        # The answer about this file: the window's first data (the tiny config's) may have been
        # reported before set_config, and that report stays shown until the new one comes.
        qtbot.waitUntil(lambda: view.result.get("stage") == "error" or (
            view.result.get("stage") in ("statistics", "report")
            and (view.result.get("total") or view.result.get("statistics") or {}).get("records") == 50_000),
            timeout=TIMEOUT_MS)
    finally:
        timer.stop()
    assert view.result["stage"] == "statistics", view.result   # large: the full report is a button
    # The examples came from the first records only (not the whole file read into Python first).
    panel = win.panels["data"]
    assert panel.preview.partial and len(panel.preview.rows) == 40 and panel.preview.format == "alpaca"
    assert "first 40 examples" in panel.counts.text()
    assert at_preview and at_preview[0] < 50_000   # shown before the statistics were complete
    assert view.result["total"]["records"] == 50_000 and view.result["total"]["examples"] == 50_000
    assert not view.full_btn.isHidden() and "50,000" in view.summary.text()
    assert len([n for n in partials if 0 < n < 50_000]) >= 3       # it filled in progressively
    assert sum(view.hist_counts) == 50_000 and not view.hist_slot.isHidden()
    # "Full report": the engine prepares all of it (worker processes, the data cache) in the helper.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    n_first = len(ticks)
    ticks.clear()
    timer.start()
    try:
        view.full_btn.click()
        qtbot.waitUntil(lambda: view.result.get("stage") == "report", timeout=TIMEOUT_MS)
    finally:
        timer.stop()
    assert view.complete and view.result["report"]["counts"]["records"] == 50_000
    assert "Complete report" in view.status.text() and view.full_btn.isHidden()
    gaps += [b - a for a, b in zip(ticks, ticks[1:])]
    assert n_first > 20 and len(ticks) > 20 and max(gaps) < 0.25, f"event loop blocked for {max(gaps):.3f} s"


def test_merge_statistics_adds_sources_bin_by_bin():
    edges = [0.0, 1.0, 2.0]
    a = {"records": 3, "examples": 2, "skipped": 1, "lengths": {"edges": edges, "counts": [1, 1, 0]},
         "roles": {"user": 2}, "issues": {"empty_turn": 1}, "problems": [{"where": "a line 2"}], "done": True,
         "progress": 1.0, "limit": 64}
    b = {"records": 5, "examples": 5, "lengths": {"edges": edges, "counts": [0, 2, 3]}, "roles": {"user": 5},
         "problems": [], "done": False, "progress": 0.5, "limit": 64}
    m = merge_statistics([a, b])
    assert m["records"] == 8 and m["examples"] == 7 and m["skipped"] == 1
    assert m["lengths"]["counts"] == [1, 3, 3] and m["roles"] == {"user": 7} and m["issues"] == {"empty_turn": 1}
    assert m["done"] is False and m["progress"] == 0.75 and len(m["problems"]) == 1


def test_max_length_fix_covers_the_99th_percentile():
    result = {"stage": "report", "report": {"counts": {"skipped": 0}, "placeholders": {"name": {"count": 2, "filled": False}},
                                            "lengths": {"p99": 301, "limit": 256, "over_limit": 12}}}
    fixes = {f.path: f for f in suggest_fixes(result, {"max_length": 256, "replacements": {}})}
    assert fixes["data.max_length"].value == 304 and "“Max length”" in fixes["data.max_length"].why
    assert fixes["data.replacements"].value == {"name": ""}
    assert not suggest_fixes(result | {"report": {"lengths": {"p99": 200, "limit": 256}}}, {"max_length": 256})


def test_a_bad_record_deep_in_a_large_file_gates_start(make_window, qtbot, tiny_config, tmp_path):
    """The preview of a large file reads only its first records; the statistics read all of them
    and hold Start while a record would stop training, until “Skip bad lines” is ticked."""
    path = tmp_path / "large.jsonl"
    rows = [json.dumps({"prompt": f"Tell me about the number {i} in a few words, please.", "completion": f"{i}."})
            for i in range(30_000)]
    rows[25_000] = '{"prompt": "cut off'
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert path.stat().st_size > 2_000_000
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(path)
    win.config_model.set_config(cfg)
    view, panel = _report(win), win.panels["data"]
    qtbot.waitUntil(lambda: view.result.get("stage") == "statistics", timeout=TIMEOUT_MS)
    assert panel.preview.partial and not panel.preview.rejected
    errors = panel.values()[1]
    assert "line 25001" in errors["data.skip_bad_lines"] and "“Skip bad lines”" in errors["data.skip_bad_lines"]
    assert "data.skip_bad_lines" in win.config_model.errors and not win.act_start.isEnabled()
    view.fix_button("data.skip_bad_lines").click()
    qtbot.waitUntil(lambda: "data.skip_bad_lines" not in win.config_model.errors, timeout=TIMEOUT_MS)


def _pairs(path, n: int = 8):
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def test_preference_data_with_sft_offers_the_task_and_start_follows(make_window, qtbot, tiny_config, tmp_path):
    """Preference pairs while Training › Task is sft: the report offers "Set Training › Task to
    dpo"; one click sets the Training panel's control, the report reads the pairs as DPO will,
    and Start is no longer blocked. The reverse (supervised data with dpo) offers sft."""
    path = _pairs(tmp_path / "pref.jsonl")
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(path)
    win.config_model.set_config(cfg)
    view = _report(win)
    qtbot.waitUntil(lambda: view.result.get("stage") == "error" and view.fix_button("train.task") is not None,
                    timeout=TIMEOUT_MS)
    assert view.result["task"] == "sft" and view.result["fits"] == "dpo"
    qtbot.waitUntil(lambda: not win.act_start.isEnabled() and bool(win.config_model.errors), timeout=TIMEOUT_MS)
    btn = view.fix_button("train.task")
    assert btn.text() == "Set Training › Task to dpo"
    assert "“Task” (Training panel)" in btn.toolTip() and "train.task" not in btn.toolTip()
    assert view.fix_button("data.columns") is not None   # training the chosen answers as SFT stays offered
    btn.click()
    task_editor = win.panels["training"].form.editors["task"]
    assert task_editor.raw() == "dpo"
    qtbot.waitUntil(lambda: win.config_model.config.train.task == "dpo", timeout=5000)
    assert view.fix_button("train.task") is None
    # The report now reads the pairs as DPO will; nothing gates Start.
    qtbot.waitUntil(lambda: view.result.get("stage") == "preference", timeout=TIMEOUT_MS)
    assert view.result["train"] == 8 and "8 pairs for training" in view.summary.text()
    assert view.sources.item(0, 1).text() == "prompt_chosen_rejected" and not view.fixes
    qtbot.waitUntil(win.act_start.isEnabled, timeout=TIMEOUT_MS)
    assert not win.config_model.errors

    # The reverse: supervised examples while the task is dpo.
    cfg = tiny_config(task="dpo")
    win.config_model.set_config(cfg)
    qtbot.waitUntil(lambda: view.fix_button("train.task") is not None, timeout=TIMEOUT_MS)
    btn = view.fix_button("train.task")
    assert btn.text() == "Set Training › Task to sft" and "supervised examples" in btn.toolTip()
    assert not win.act_start.isEnabled()
    btn.click()
    qtbot.waitUntil(lambda: win.config_model.config.train.task == "sft", timeout=5000)
    qtbot.waitUntil(lambda: view.result.get("stage") == "report", timeout=TIMEOUT_MS)
    qtbot.waitUntil(win.act_start.isEnabled, timeout=TIMEOUT_MS)


def test_task_fix_names_kto_for_labelled_answers():
    labelled = {"stage": "error", "task": "sft", "fits": "kto"}
    (fix,) = [f for f in suggest_fixes(labelled, {}) if f.path == "train.task"]
    assert fix.value == "kto" and fix.label == "Set Training › Task to kto" and "labelled good or bad" in fix.why
    # labelled answers for a paired task (refused: field train.task) → kto too
    assert suggest_fixes({"stage": "error", "task": "dpo", "fits": "kto"}, {})[0].value == "kto"
    # data that serves the task set now, or an unknown mix, offers no task
    assert not [f for f in suggest_fixes({"stage": "error", "task": "orpo", "fits": "dpo"}, {}) if f.path == "train.task"]
    assert not suggest_fixes({"stage": "error", "task": "sft", "fits": None}, {})
    # the fix follows the task set now, not the one the report was made for
    assert not suggest_fixes(labelled, {}, task="kto")


def test_the_report_says_which_saved_split_is_held_out(make_window, qtbot, tiny_config, tmp_path):
    """A save_to_disk DatasetDict with a validation split: the report names that split as the
    held-out set, for SFT examples and for a preference task's pairs."""
    import datasets

    sft, pref = tmp_path / "sft", tmp_path / "pref"
    rows = [{"instruction": f"Say {k}.", "input": "", "output": f"{k}!"} for k in range(8)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "validation": datasets.Dataset.from_list(rows[:2])}).save_to_disk(str(sft))
    pairs = [{"prompt": f"Q{k}?", "chosen": f"good {k}", "rejected": "bad"} for k in range(8)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(pairs),
                          "test": datasets.Dataset.from_list(pairs[:3])}).save_to_disk(str(pref))
    win = make_window()
    view = _report(win)
    cfg = tiny_config()
    cfg.data.path = str(sft)
    win.config_model.set_config(cfg)
    qtbot.waitUntil(lambda: view.result.get("stage") in ("report", "error"), timeout=TIMEOUT_MS)
    assert view.result["stage"] == "report", view.result
    assert f"Evaluation: 2 examples from {sft} (split validation)" in view.summary.text()
    cfg = tiny_config(task="dpo")
    cfg.data.path = str(pref)
    win.config_model.set_config(cfg)
    qtbot.waitUntil(lambda: view.result.get("stage") == "preference", timeout=TIMEOUT_MS)
    assert view.result["train"] == 8 and view.result["eval"] == 3
    assert f"held-out rows: 3 from {pref} (split test)" in view.summary.text()
