"""Rendering with the chat template and label masks, checked token by token on the tiny ChatML model."""

from __future__ import annotations

import json

import pytest

from engine.config import DataConfig
from engine.data import (
    IGNORE_INDEX,
    chat_template_for,
    load_records,
    prepare_data,
    render_segments,
    token_lengths,
)

CONVO = {"messages": [{"role": "system", "content": "Talk like a pirate."},
                      {"role": "user", "content": "What is two plus two?"},
                      {"role": "assistant", "content": "Ahoy! Four ⚓"},
                      {"role": "user", "content": "And the capital of Italy?"},
                      {"role": "assistant", "content": "Ahoy! Rome ⚓"}]}


def write(tmp_path, rows, name="d.jsonl") -> str:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(p)


def prepare(tmp_path, tok, rows, **cfg):
    cfg.setdefault("validation_split", 0)
    return prepare_data(DataConfig(path=write(tmp_path, rows), **cfg), tok)


def expected_from_pieces(tok, pieces):
    """ids and labels built independently: each (text, trained) piece tokenized on its own."""
    ids, labels = [], []
    for text, trained in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def test_chatml_masking_token_by_token(tmp_path, tiny_tokenizer):
    tok = tiny_tokenizer
    ex = prepare(tmp_path, tok, [CONVO]).train[0]
    pieces = [("<|im_start|>system\nTalk like a pirate.<|im_end|>\n"
               "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n", False),
              ("Ahoy! Four ⚓<|im_end|>", True),
              ("\n<|im_start|>user\nAnd the capital of Italy?<|im_end|>\n<|im_start|>assistant\n", False),
              ("Ahoy! Rome ⚓<|im_end|>", True),
              ("\n", False)]
    ids, labels = expected_from_pieces(tok, pieces)
    assert ex["input_ids"] == ids
    assert ex["labels"] == labels
    # The same ids as tokenizing the rendered conversation in one go (what inference sees).
    text = tok.apply_chat_template(CONVO["messages"], tokenize=False)
    assert ex["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    # The end-of-turn token is trained after assistant turns only; the newline after it is not.
    end = tok.convert_tokens_to_ids("<|im_end|>")
    trained_ends = [i for i, (t, lab) in enumerate(zip(ex["input_ids"], ex["labels"])) if t == end and lab != -100]
    assert len(trained_ends) == 2 and ex["input_ids"].count(end) == 5  # system, 2 × user, 2 × assistant
    assert all(ex["labels"][i + 1] == IGNORE_INDEX for i in trained_ends)


def test_train_on_prompt_trains_everything(tmp_path, tiny_tokenizer):
    ex = prepare(tmp_path, tiny_tokenizer, [CONVO], train_on_prompt=True).train[0]
    assert ex["labels"] == ex["input_ids"]


def test_system_prompt_added_only_when_missing(tmp_path, tiny_tokenizer):
    no_system = {"messages": CONVO["messages"][1:3]}
    rows = [no_system, CONVO]
    prepared = prepare(tmp_path, tiny_tokenizer, rows, system_prompt="Be brief.")
    first = tiny_tokenizer.decode(prepared.train[0]["input_ids"])
    second = tiny_tokenizer.decode(prepared.train[1]["input_ids"])
    assert first.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "Be brief." not in second and "Talk like a pirate." in second


def test_default_chatml_when_tokenizer_has_no_template(tmp_path, tiny_model_no_template, tiny_tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_no_template)
    assert not tok.chat_template and tok.pad_token is None
    got = prepare(tmp_path, tok, [CONVO]).train[0]
    want = prepare(tmp_path, tiny_tokenizer, [CONVO]).train[0]
    assert got == want  # the default is ChatML, ending turns with <|im_end|> as the vocabulary has it
    assert "<|im_end|>" in chat_template_for(tok)


def test_prompt_completion_with_and_without_template(tmp_path, tiny_tokenizer, tiny_model_no_template):
    from transformers import AutoTokenizer

    row = {"prompt": "What is two plus two?", "completion": "Four."}
    chat = prepare(tmp_path, tiny_tokenizer, [row]).train[0]
    ids, labels = expected_from_pieces(tiny_tokenizer, [
        ("<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n", False),
        ("Four.<|im_end|>", True), ("\n", False)])
    assert (chat["input_ids"], chat["labels"]) == (ids, labels)

    base = AutoTokenizer.from_pretrained(tiny_model_no_template)
    raw = prepare(tmp_path, base, [row]).train[0]
    ids, labels = expected_from_pieces(base, [("What is two plus two?", False), ("Four.<|im_end|>", True)])
    assert (raw["input_ids"], raw["labels"]) == (ids, labels)


def test_text_is_all_trained_with_eos(tmp_path, tiny_tokenizer):
    ex = prepare(tmp_path, tiny_tokenizer, [{"text": "Once upon a time."}]).train[0]
    assert ex["labels"] == ex["input_ids"]
    assert ex["input_ids"][-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(ex["input_ids"]) == "Once upon a time.<|im_end|>"


def test_template_that_rewrites_earlier_turns_falls_back_to_finding_answers(tmp_path, tiny_tokenizer):
    import copy

    # Like templates that drop reasoning from earlier turns: the last turn renders differently,
    # so prefixes are not prefixes of the whole; answers are then located by their text.
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if loop.last %}[final]{% endif %}"
                         "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    ex = prepare(tmp_path, tok, [CONVO]).train[0]
    trained = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(trained) == "Ahoy! Four ⚓<|im_end|>Ahoy! Rome ⚓<|im_end|>"


@pytest.mark.parametrize("record", [
    CONVO,
    {"prompt": "Sky colour?", "completion": "Blue."},
    {"text": "Plain words."},
])
def test_render_segments_agree_with_labels(tmp_path, tiny_tokenizer, record):
    cfg = DataConfig(path=write(tmp_path, [record]), validation_split=0)
    [ex] = prepare_data(cfg, tiny_tokenizer).train
    segs = render_segments(load_records(cfg).train[0], tiny_tokenizer, cfg)
    # Runs of equally-labelled tokens, decoded, are exactly the segments.
    runs: list[list] = []
    for t, lab in zip(ex["input_ids"], ex["labels"]):
        flag = lab != IGNORE_INDEX
        if runs and runs[-1][1] == flag:
            runs[-1][0].append(t)
        else:
            runs.append([[t], flag])
    assert [(tiny_tokenizer.decode(ids), flag) for ids, flag in runs] == segs
    assert token_lengths([load_records(cfg).train[0]], tiny_tokenizer, cfg) == [len(ex["input_ids"])]


def test_segments_of_chat_show_the_answer(tiny_tokenizer):
    segs = render_segments(CONVO, tiny_tokenizer, DataConfig())
    assert [s for s, trained in segs if trained] == ["Ahoy! Four ⚓<|im_end|>", "Ahoy! Rome ⚓<|im_end|>"]
    assert "".join(s for s, _ in segs) == tiny_tokenizer.apply_chat_template(CONVO["messages"], tokenize=False)


def rows_n(n):
    return [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(n)]


def test_validation_split_is_seeded(tmp_path, tiny_tokenizer):
    path = write(tmp_path, rows_n(40))
    a = prepare_data(DataConfig(path=path, validation_split=0.1), tiny_tokenizer, seed=1)
    b = prepare_data(DataConfig(path=path, validation_split=0.1), tiny_tokenizer, seed=1)
    c = prepare_data(DataConfig(path=path, validation_split=0.1), tiny_tokenizer, seed=2)
    assert len(a.eval) == 4 and len(a.train) == 36
    assert a.eval == b.eval and a.train == b.train
    assert a.eval != c.eval
    train_ids = {tuple(e["input_ids"]) for e in a.train}
    assert not train_ids & {tuple(e["input_ids"]) for e in a.eval}
    none = prepare_data(DataConfig(path=path, validation_split=0), tiny_tokenizer)
    assert none.eval == [] and len(none.train) == 40


def test_validation_path_wins_over_split(tmp_path, tiny_tokenizer):
    cfg = DataConfig(path=write(tmp_path, rows_n(10)), validation_path=write(tmp_path, rows_n(3), "v.jsonl"),
                     validation_split=0.2)
    prepared = prepare_data(cfg, tiny_tokenizer)
    assert len(prepared.train) == 10 and len(prepared.eval) == 3


def test_max_examples_extra_prompt_tokens_and_stats(tmp_path, tiny_tokenizer):
    long_row = {"prompt": "Hi", "completion": "word " * 80}
    cfg = DataConfig(path=write(tmp_path, rows_n(5) + [long_row]), validation_split=0, max_length=64)
    prepared = prepare_data(cfg, tiny_tokenizer, extra_prompt_tokens=16)
    assert max(prepared.stats["lengths"]) == 48 and prepared.n_truncated == 1
    assert any("max_length=64 minus 16 virtual tokens" in w for w in prepared.warnings)
    assert prepared.stats["num_tokens"] == sum(len(e["input_ids"]) for e in prepared.train)
    assert prepared.stats["num_trained_tokens"] == sum(
        sum(lab != IGNORE_INDEX for lab in e["labels"]) for e in prepared.train)
    cfg.max_examples = 2
    assert len(prepare_data(cfg, tiny_tokenizer).train) == 2


def test_reporter_hears_format_reason_and_split(tmp_path, tiny_tokenizer):
    from engine.events import ListSink, MultiReporter

    sink = ListSink()
    prepare_data(DataConfig(path=write(tmp_path, rows_n(20))), tiny_tokenizer, reporter=MultiReporter(sink))
    logs = " | ".join(e["message"] for e in sink.of("log"))
    assert "format prompt_completion (columns prompt, completion → prompt_completion)" in logs
    assert "held out 2 of 20 examples" in logs
    assert "loss on completions and assistant turns only" in logs
