"""The wire (engine/wire.py): every helper process speaks one JSON object a line; nothing pickles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine import wire
from engine.events import dumps as event_dumps

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("msg", [
    wire.request(7, "preview", [{"data": {"path": "x.jsonl"}}, None, 3, "é ✓"]),
    wire.cancel(7),
    wire.progress("Timing step 1 of 3", 1, 3, id=7),
    wire.progress(done=None, total=None),
    wire.partial({"side": 1, "piece": " Paris\n"}, id=2),
    wire.result({"kind": "gguf", "details": {"max_abs_logit_diff": 1.5e-7}, "rows": [["a", True]]}, id=3),
    wire.error("data/train.jsonl line 3: not valid JSON.", error_type="DataError", user_error=True,
               hint="Fix the line.", id=4),
])
def test_round_trip_is_exact_and_one_line(msg):
    line = wire.encode(msg)
    assert "\n" not in line and line.isascii()
    assert wire.decode(line) == msg
    assert wire.decode(line.encode() + b"\n") == msg


def test_lines_that_are_not_wire_messages_are_passed_over():
    event = event_dumps({"event": "step", "type": "progress", "step": 1})
    for line in ["", "   ", "Loading checkpoint shards: 100%", "{'a': 1}", '{"half": ', "[1, 2]",
                 '{"type": "nonsense"}', event, "Traceback (most recent call last):"]:
        assert wire.decode(line) is None, line


def test_broken_messages_and_values_are_errors_not_silence():
    with pytest.raises(wire.WireError):
        wire.decode(json.dumps({"type": "request", "id": 1, "job": "x"}))  # no args
    with pytest.raises(wire.WireError):
        wire.encode({"type": "pickle"})
    with pytest.raises(TypeError):
        wire.encode(wire.result(object()))  # a job must return JSON values


def test_no_pickle_anywhere_in_the_studio_or_the_wire():
    files = sorted((ROOT / "studio").rglob("*.py")) + [ROOT / "engine" / "wire.py"]
    assert len(files) > 20
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"\b(c?pickle|marshal|shelve|dill|cloudpickle)\b", line)]
    assert hits == []

