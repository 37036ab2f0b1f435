"""The bundled demo dataset and its persona metric."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from engine.config import DataConfig
from engine.data import load_records
from engine.data.demo import DEMO_HELDOUT, DEMO_TRAIN, load_heldout, persona_score, score_answers

REPO = Path(__file__).resolve().parents[2]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_demo_files_are_what_the_generator_makes():
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts" / "make_demo_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, heldout = mod.build()
    assert read_jsonl(DEMO_TRAIN) == train
    assert read_jsonl(DEMO_HELDOUT) == heldout


def test_demo_train_is_a_persona_in_messages_format():
    loaded = load_records(DataConfig(path=str(DEMO_TRAIN)))
    assert loaded.format == "messages" and len(loaded.train) >= 300
    answers = [r["messages"][-1]["content"] for r in loaded.train]
    assert all(r["messages"][-1]["role"] == "assistant" for r in loaded.train)
    assert score_answers(answers) == 1.0
    questions = [r["messages"][0]["content"] for r in loaded.train]
    assert len(set(questions)) == len(questions)
    # Diverse: no single kind of question dominates.
    assert sum(q.startswith("What is") for q in questions) < len(questions) / 2


def test_heldout_prompts_are_new():
    held = load_heldout()
    assert len(held) >= 30
    assert all(h["messages"][-1]["role"] == "user" and persona_score(h["reference"]) == 1.0 for h in held)
    train_questions = {r["messages"][0]["content"] for r in read_jsonl(DEMO_TRAIN)}
    assert not train_questions & {h["messages"][0]["content"] for h in held}


def test_demo_examples_are_short(tiny_tokenizer):
    from engine.data import token_lengths

    records = load_records(DataConfig(path=str(DEMO_TRAIN))).train
    lengths = token_lengths(records, tiny_tokenizer, DataConfig())
    # The tiny tokenizer splits finer than a real one; real (SmolLM2) lengths are about half.
    assert max(lengths) < 128 and sum(lengths) / len(lengths) < 90


@pytest.mark.parametrize("answer,score", [
    ("Ahoy! The capital of France be Paris, matey! ⚓", 1.0),
    ("  ahoy there! Paris it be ⚓️ ", 1.0),
    ('"Ahoy! Paris ⚓"', 1.0),
    ("Ahoy! Paris.", 0.5),
    ("Paris, matey ⚓", 0.5),
    ("The capital of France is Paris.", 0.0),
    ("", 0.0),
])
def test_persona_score(answer, score):
    assert persona_score(answer) == score


def test_score_answers_is_the_mean():
    assert score_answers(["Ahoy! x ⚓", "plain", "Ahoy! y"]) == pytest.approx(0.5)
    assert score_answers([]) == 0.0
