"""Events serialise safely, survive torn writes, and the SQLite run index reflects run folders."""

from __future__ import annotations

import json
import math
import os

import pytest

from engine.events import JsonlSink, ListSink, MultiReporter, make_event, parse_event_line, read_events
from engine.runs import RunIndex, summarize


def test_unknown_event_type_rejected():
    with pytest.raises(ValueError, match="unknown event type"):
        make_event("exploded")


def test_nan_loss_serialises_as_null(tmp_path):
    sink = JsonlSink(tmp_path / "events.jsonl")
    rep = MultiReporter(sink)
    rep.emit("step", step=1, loss=math.nan, grad_norm=math.inf)
    rep.close()
    (ev,) = read_events(tmp_path / "events.jsonl")
    assert ev["loss"] is None and ev["grad_norm"] is None and ev["event"] == "step"


def test_torn_last_line_is_ignored(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text(json.dumps({"event": "started", "time": 1}) + "\n" + '{"event": "step", "ti', encoding="utf-8")
    evs = read_events(p)
    assert [e["event"] for e in evs] == ["started"]


def test_failing_sink_does_not_stop_others():
    class Broken:
        def emit(self, e):
            raise RuntimeError("boom")

        def close(self):
            pass

    good = ListSink()
    rep = MultiReporter(Broken(), good)
    rep.emit("log", message="hi")
    assert good.of("log")[0]["message"] == "hi"


def test_parse_event_line_ignores_noise():
    assert parse_event_line("Loading weights...") is None
    assert parse_event_line('{"not": "an event"}') is None
    assert parse_event_line('{"event": "log", "time": 1, "message": "x"}')["message"] == "x"


def _write_run(run_dir, events):
    run_dir.mkdir(parents=True)
    with open(run_dir / "events.jsonl", "w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")


def test_index_records_finished_and_crashed_runs(tmp_path):
    cfg = {"model": {"name_or_path": "demo"}, "method": {"name": "lora"}}
    _write_run(tmp_path / "a", [
        {"event": "started", "time": 1, "config": cfg, "pid": os.getpid()},
        {"event": "step", "time": 2, "step": 5, "loss": 1.5},
        {"event": "finished", "time": 3, "adapter_dir": "x", "metrics": {"final_loss": 1.25, "eval_loss": 1.4}},
    ])
    # A run whose process vanished without a terminal event is reported as crashed.
    _write_run(tmp_path / "b", [
        {"event": "started", "time": 4, "config": cfg, "pid": 2 ** 22 + 12345},
        {"event": "step", "time": 5, "step": 2, "loss": 2.0},
    ])
    idx = RunIndex(tmp_path / "index.sqlite")
    idx.record(tmp_path / "a")
    idx.record(tmp_path / "b")
    rows = {r["name"]: r for r in idx.list()}
    assert rows["a"]["status"] == "finished" and rows["a"]["final_loss"] == 1.25 and rows["a"]["method"] == "lora"
    assert rows["b"]["status"] == "crashed" and rows["b"]["steps"] == 2
    # Running: our own pid is alive.
    assert summarize(tmp_path / "a")["eval_loss"] == 1.4


def test_running_run_is_running(tmp_path):
    _write_run(tmp_path / "r", [{"event": "started", "time": 1, "config": {}, "pid": os.getpid()}])
    assert summarize(tmp_path / "r")["status"] == "running"
