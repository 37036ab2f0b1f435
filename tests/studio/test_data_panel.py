"""The data preview agrees with the engine: trained tokens, token lengths, truncation."""

from __future__ import annotations

import json
import re

from engine.data import IGNORE_INDEX, prepare_data
from studio.panels.data import HTML_ROLE, TEXT_COL

PREVIEW_TIMEOUT_MS = 180_000  # the helper process imports transformers first


def test_preview_masking_matches_engine_labels(make_window, qtbot, tiny_config, tiny_tokenizer):
    win = make_window()
    cfg = tiny_config()
    cfg.data.max_length = 512
    win.config_model.set_config(cfg)
    panel = win.panels["data"]
    qtbot.waitUntil(lambda: len(panel.preview.rows) > 0, timeout=PREVIEW_TIMEOUT_MS)
    p = panel.preview
    assert p.format == "messages" and p.reason
    assert "messages" in panel.detected.text()
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    assert len(p.rows) == min(len(prepared.train), 40)
    for segs, ex in zip(p.rows, prepared.train):
        trained_ids = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
        shown = "".join(text for text, trained in segs if trained)
        assert shown == tiny_tokenizer.decode(trained_ids, skip_special_tokens=False)
        assert any(not trained for _, trained in segs)  # the prompt is visibly masked
    # the table shows the first example with its trained part highlighted
    html = panel.table.item(0, TEXT_COL).data(HTML_ROLE)
    first_trained = next(text for text, trained in p.rows[0] if trained)
    assert "background-color" in html and first_trained.split("\n")[0][:10] in html
    assert panel.table.rowCount() == len(p.rows)


def test_histogram_counts_truncation_like_the_engine(make_window, qtbot, tiny_config, tiny_tokenizer, tmp_path):
    long_rows = [{"prompt": "word " * n, "completion": "ok"} for n in (2, 5, 40, 80, 120)]
    path = tmp_path / "pc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in long_rows))
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(path)
    win.config_model.set_config(cfg)
    panel = win.panels["data"]
    qtbot.waitUntil(lambda: len(panel.preview.lengths) == 5, timeout=PREVIEW_TIMEOUT_MS)
    assert panel.preview.format == "prompt_completion"
    panel.form.editors["max_length"].widget.setValue(60)
    qtbot.waitUntil(lambda: panel.histogram.max_length == 60, timeout=3000)
    cfg.data.max_length = 60
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    cut = panel.histogram.truncated()
    assert cut > 0
    # the engine cuts (or, when nothing to learn is left, drops) the same examples in training
    affected = sum(int(m.group(1)) for w in prepared.warnings
                   for m in [re.match(r"(\d+) of 5 examples (were longer|had no answer tokens)", w)] if m)
    assert affected == cut, prepared.warnings
    assert len(prepared.train) == 5 - cut or all(len(e["input_ids"]) <= 60 for e in prepared.train)
    assert f"{cut} of 5" in panel.histogram.summary.text()
    # in the window's words: the control's name, never the run-file key (max_length, data.drop_long)
    from studio.wording import KEY_RE

    summary = panel.histogram.summary.text()
    assert "“Max length” (Data tab) 60" in summary and "max_length" not in summary, summary
    panel.form.editors["drop_long"].widget.setChecked(True)
    qtbot.waitUntil(lambda: panel.histogram.drop, timeout=3000)
    summary = panel.histogram.summary.text()
    assert "dropped" in summary and not KEY_RE.search(summary) and "drop_long" not in summary, summary


def test_column_mapping_override(make_window, qtbot, tiny_config, tmp_path):
    rows = [{"question": f"q{i}?", "answer": f"a{i}", "body": f"text {i}"} for i in range(6)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(path)
    win.config_model.set_config(cfg)
    panel = win.panels["data"]
    qtbot.waitUntil(lambda: panel.preview.format != "", timeout=PREVIEW_TIMEOUT_MS)
    assert panel.preview.format == "prompt_completion"
    fmt = panel.form.editors["format"].widget
    fmt.setCurrentIndex(fmt.findData("text"))
    qtbot.waitUntil(lambda: "text" in panel.mapping.combos, timeout=PREVIEW_TIMEOUT_MS)
    combo = panel.mapping.combos["text"]
    combo.setCurrentIndex(combo.findData("body"))
    qtbot.waitUntil(lambda: panel.preview.format == "text" and bool(panel.preview.rows), timeout=PREVIEW_TIMEOUT_MS)
    assert win.config_model.config.data.columns == {"text": "body"}
    assert "text 0" in "".join(t for t, _ in panel.preview.rows[0])


def test_a_mapping_for_file_a_never_touches_file_b(make_window, qtbot, tiny_config, tmp_path, tiny_data):
    """Issue 15: after mapping one file's columns, every later file failed with "data.columns maps
    prompt to the column 'question'" (a valid messages file too), the drop-downs still said
    "(detected)" and nothing cleared it. A mapping (and the format chosen with it) is one file's."""
    a = tmp_path / "qa.jsonl"
    a.write_text("".join(json.dumps({"ask": f"q{i}?", "reply": f"a{i}"}) + "\n" for i in range(6)))
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(a)
    win.config_model.set_config(cfg)
    panel = win.panels["data"]
    qtbot.waitUntil(lambda: panel.previewing(str(a)), timeout=PREVIEW_TIMEOUT_MS)
    assert panel.preview.rejected  # ask/reply: detection cannot place them
    fmt = panel.form.editors["format"].widget
    fmt.setCurrentIndex(fmt.findData("prompt_completion"))
    qtbot.waitUntil(lambda: "completion" in panel.mapping.combos, timeout=PREVIEW_TIMEOUT_MS)
    for role, col in (("prompt", "ask"), ("completion", "reply")):
        panel.mapping.combos[role].setCurrentIndex(panel.mapping.combos[role].findData(col))
    qtbot.waitUntil(lambda: panel.previewing(str(a)) and not panel.preview.rejected and bool(panel.preview.rows),
                    timeout=PREVIEW_TIMEOUT_MS)
    assert "prompt ← ask, completion ← reply" in panel.mapping.summary.text()  # shown by name

    panel.path.setText(str(tiny_data))  # file B: a valid messages file
    qtbot.waitUntil(lambda: panel.previewing(str(tiny_data)), timeout=PREVIEW_TIMEOUT_MS)
    assert not panel.preview.error and panel.preview.format == "messages"
    assert win.config_model.config.data.columns == {} and win.config_model.config.data.format == "auto"
    assert all(c.currentData() is None for c in panel.mapping.combos.values())
    assert "data.columns" not in win.config_model.errors and "data.path" not in win.config_model.errors

    panel.path.setText(str(a))  # back to A: its mapping comes back with it
    qtbot.waitUntil(lambda: panel.previewing(str(a)) and bool(panel.preview.rows), timeout=PREVIEW_TIMEOUT_MS)
    assert win.config_model.config.data.columns == {"prompt": "ask", "completion": "reply"}
    assert panel.mapping.combos["prompt"].currentData() == "ask"
    panel.mapping.reset_btn.click()  # and it can be reset
    qtbot.waitUntil(lambda: win.config_model.config.data.columns == {}, timeout=3000)
    assert win.config_model.config.data.format == "auto"


def test_the_preview_follows_the_task(make_window, qtbot, tiny_config, tmp_path):
    """The walk of 2026-11-30: a preference file with train.task sft is refused (“set Task to
    dpo…”); setting Task to dpo in the Training panel kept that refusal and Start off, because the
    preview was keyed by the data settings alone. The task is part of what the preview reads."""
    path = tmp_path / "pref.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                            for i in range(8)), encoding="utf-8")
    win = make_window()
    cfg = tiny_config()
    cfg.data.path = str(path)
    win.config_model.set_config(cfg)
    panel = win.panels["data"]
    qtbot.waitUntil(lambda: panel.previewing(str(path)), timeout=PREVIEW_TIMEOUT_MS)
    assert panel.preview.rejected and "data.columns" in win.config_model.errors
    # the control is named once, by Start's reason: “Column mapping” (Data tab): pref.jsonl: this is…
    assert win.config_model.errors["data.columns"].startswith(f"{path}: this is preference data")
    assert win.act_start.toolTip().count("“Column mapping” (Data tab)") == 1 + win.config_model.errors[
        "data.columns"].count("“Column mapping” (Data tab)")

    task = win.panels["training"].form.editors["task"].widget
    task.setCurrentIndex(task.findData("dpo"))
    qtbot.waitUntil(lambda: panel.previewing(str(path)) and not panel.preview.rejected, timeout=PREVIEW_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "data.columns" not in win.config_model.errors, timeout=5000)
    assert panel.preview.rows and "pairs" in panel.status.text()

    task.setCurrentIndex(task.findData("sft"))  # and back: refused again, never the dpo verdict
    qtbot.waitUntil(lambda: panel.previewing(str(path)) and panel.preview.rejected, timeout=PREVIEW_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "data.columns" in win.config_model.errors, timeout=5000)


def test_the_length_summary_gets_the_lines_it_wraps_to(make_window, qtbot):
    """The walk of 2026-11-30: at 1280×720 the summary under the token-length histogram (“All 332
    examples fit in “Max length” (Data tab) 256. Median 58 tokens, longest 69.”) wraps to two
    lines but was laid out one line tall, so its text, centred, was drawn over the histogram's
    “tokens” axis label."""
    win = make_window()
    win.resize(1280, 720)
    win.placement.size_docks()
    win.placement.show_panel("data")
    hist = win.panels["data"].histogram
    hist.build_plots()
    hist.set_lengths([40 + i % 30 for i in range(332)])
    label = hist.summary
    qtbot.waitUntil(lambda: label.isVisible() and label.width() > 0, timeout=3000)
    from PySide6.QtWidgets import QSplitter

    split = hist.parentWidget()
    while not isinstance(split, QSplitter):
        split = split.parentWidget()
    split.setChildrenCollapsible(False)
    split.setSizes([10_000, 1])  # the histogram's pane at its smallest, as a 720-px screen leaves it
    qtbot.wait(100)  # the layout settles
    assert label.heightForWidth(label.width()) > label.fontMetrics().height(), "wraps at this width"
    assert label.height() >= label.heightForWidth(label.width()), label.text()
    assert label.geometry().top() >= hist.slot.geometry().bottom(), "the text is drawn under the plot"
