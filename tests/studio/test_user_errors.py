"""Every user error the window shows names the window's control (never a run-file key such as
``data.skip_bad_lines``), offers to go there, and never asks the user to "report it"; "Show log"
shows the lines that explain a failure, not a library's FutureWarning; the Log panel wraps, shows
a failure once and keeps library messages apart.

The messages are the engine's own, raised by its own code (a bad data file, columns that cannot be
placed, a mapping to a missing column, a model not in the cache, an out-of-memory hint), and a
failed run's banner comes from a real run's ``failed`` event."""

from __future__ import annotations

import json
import re

import pytest

from studio.wording import KEY_RE, named_fields, window_text

KEYS = re.compile(r"\b(?:model|data|method|train)\.[a-z_]+\b")


def _engine_errors(tmp_path) -> list[tuple[str, Exception]]:
    from engine.config import RunConfig
    from engine.data import DataError, load_records
    from engine.models import ModelError, resolve_source

    out = []

    def data_error(rows: str, **data):
        path = tmp_path / f"d{len(out)}.jsonl"
        path.write_text(rows)
        cfg = RunConfig().data
        cfg.path = str(path)
        for k, v in data.items():
            setattr(cfg, k, v)
        with pytest.raises(DataError) as info:
            load_records(cfg)
        return info.value

    ok = json.dumps({"prompt": "a", "completion": "b"})
    out.append(("a line that is not JSON", data_error(ok + "\n{oops\n")))
    out.append(("columns detection cannot place", data_error(json.dumps({"ask": "a", "reply": "b"}) + "\n")))
    out.append(("a mapping to a missing column", data_error(ok + "\n", columns={"prompt": "question"})))
    with pytest.raises(ModelError) as info:
        resolve_source("nobody/no-such-model-anywhere", offline=True)
    out.append(("a hub id not in the cache", info.value))
    return out


def test_engine_user_errors_in_the_windows_words(tmp_path):
    from engine.training.hints import hint_for

    for what, exc in _engine_errors(tmp_path):
        text = str(exc)
        assert KEYS.search(text), f"{what}: the engine's own message names a run-file key ({text})"
        shown = window_text(text)
        assert not KEY_RE.search(shown), f"{what}: {shown}"
        assert "“" in shown and "report it" not in shown.lower(), f"{what}: {shown}"
        assert named_fields(text), what  # so a "Go to …" button can be offered
        assert "report it" not in hint_for(exc).lower(), f"{what}: the hint asks to report the user's mistake"


def test_a_bare_field_name_in_an_estimate_note_is_the_controls():
    shown = window_text("packing: each step is one row of batch × max_length = 1024 tokens")
    assert shown == "packing: each step is one row of batch × “Max length” = 1024 tokens"
    assert window_text("raise data.max_length") == "raise “Max length” (Data tab)"


def test_out_of_memory_hint_names_the_controls():
    from engine.config import RunConfig
    from engine.training.hints import hint_for

    cfg = RunConfig()
    cfg.train.batch_size = 8
    hint = hint_for(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), cfg)
    shown = window_text(hint, user_error=False)
    assert "“Batch size” (Training panel) 8 → 4" in shown and "tick “Gradient checkpointing”" in shown
    assert not KEY_RE.search(shown)


def test_a_failed_runs_banner_names_the_control_and_shows_the_relevant_log(make_window, qtbot, tmp_path,
                                                                           fake_engine):
    """The banner of a run that failed on the user's data: the engine's own message and hint, in the
    window's words, with a button to the control, no "report it", and a log without the library's
    FutureWarning; the Log panel writes the failure once and keeps the warning apart."""
    from engine.config import RunConfig
    from engine.data import DataError
    from engine.errors import error_field
    from engine.training.hints import hint_for
    from studio.supervisor import RunSupervisor

    err = DataError("no training examples left after truncation and filtering", file="train.jsonl",
                    hint="See the warnings above; raise data.max_length or fix the data.")
    cmd = fake_engine(fail=1, error=str(err), hint=hint_for(err))
    assert error_field(err) == "data.path"
    win = make_window(supervisor=RunSupervisor(command=cmd))
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "fails")
    win.config_model.set_config(cfg)
    win.config_model.validate_now = lambda: (cfg, {})  # the demo model need not exist here
    with qtbot.waitSignal(win.runs.sig_failed, timeout=30_000):
        assert win.runs.start()
    banner = win.panels["monitor"].banner
    qtbot.waitUntil(banner.isVisible, timeout=5000)
    shown = banner.title.text() + " " + banner.hint.text()
    assert "“Max length” (Data tab)" in shown and not KEY_RE.search(shown), shown
    assert "report it" not in shown.lower()
    assert banner.action.isVisible() and banner.action.text() == "Go to Max length"
    banner.action.click()
    qtbot.waitUntil(lambda: win.panels["data"].form.editors["max_length"].widget.hasFocus(), timeout=3000)
    assert "FutureWarning" not in banner.log.toPlainText()
    log = win.panels["log"]
    assert log.plain_text().count("Run failed") == 1 and "Failed:" not in log.plain_text()
    qtbot.waitUntil(lambda: "FutureWarning" in log.library_text(), timeout=5000)
    assert "FutureWarning" not in log.plain_text() and "warnings.warn(" not in log.plain_text()
    assert log.library_btn.text() == "Library messages (2)"


def test_log_lines_wrap_and_never_scroll_sideways(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPlainTextEdit

    from studio.panels.log import LogPanel

    panel = LogPanel()
    qtbot.addWidget(panel)
    panel.resize(400, 200)
    panel.show()
    panel.append("x" * 2000)
    assert panel.text.lineWrapMode() == QPlainTextEdit.LineWrapMode.WidgetWidth
    assert panel.text.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    assert panel.text.horizontalScrollBar().maximum() == 0
