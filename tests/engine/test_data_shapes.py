"""Every shape of data people use, each with its own small input: reasoning, content parts, plain
text and chunking, line endings, pandas' JSON shapes, preference and KTO data, media, placeholders,
and what the report says about empty turns, duplicates and prompts without an answer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from engine.config import DataConfig
from engine.data import (
    IGNORE_INDEX,
    DataError,
    detect_preference,
    load_records,
    preference_record,
    prepare_data,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "templates"


def jsonl(tmp_path: Path, rows, name="d.jsonl") -> str:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(p)


def prepare(tmp_path, tok, rows, **cfg):
    cfg.setdefault("validation_split", 0)
    return prepare_data(DataConfig(path=jsonl(tmp_path, rows), **cfg), tok)


def with_template(tok, name: str):
    t = copy.deepcopy(tok)
    t.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
    return t


def pieces(tok, parts, add_special_tokens=False) -> tuple[list[int], list[int]]:
    """ids of the whole text (as inference tokenizes it), each labelled by its (text, trained) piece."""
    text = "".join(t for t, _ in parts)
    bounds, pos = [], 0
    for t, trained in parts:
        bounds.append((pos, pos + len(t), trained))
        pos += len(t)
    enc = tok(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    labels, prev = [], False
    for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        if start == end:
            labels.append(tid if prev else IGNORE_INDEX)
            continue
        [(lo, hi, trained)] = [b for b in bounds if b[0] <= start < b[1]]
        assert end <= hi, f"token {text[start:end]!r} straddles two pieces"
        labels.append(tid if trained else IGNORE_INDEX)
        prev = trained
    return list(enc["input_ids"]), labels


def trained_text(tok, ex) -> str:
    return tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX])


# ---- reasoning ----------------------------------------------------------------------------------

REASONING_ROWS = [
    {"messages": [{"role": "user", "content": "Two plus two?"},
                  {"role": "assistant", "content": "Four.", "reasoning_content": "Add them."}]},
    {"messages": [{"role": "user", "content": "Two plus two?"},
                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "Add them."},
                                                    {"type": "text", "text": "Four."}]}]},
]


def test_reasoning_through_the_templates_thinking_support(tmp_path, tiny_tokenizer):
    tok = with_template(tiny_tokenizer, "tools")
    prepared = prepare(tmp_path, tok, REASONING_ROWS)
    expected = pieces(tok, [("<|im_start|>user\nTwo plus two?<|im_end|>\n<|im_start|>assistant\n", False),
                            ("<think>\nAdd them.\n</think>\nFour.<|im_end|>", True), ("\n", False)])
    assert [(e["input_ids"], e["labels"]) for e in prepared.train] == [expected, expected]
    assert any("thinking support (reasoning_content)" in n for n in prepared.report.template)


def test_reasoning_without_thinking_support_is_refused_or_dropped_never_glued(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError) as e:
        prepare(tmp_path, tiny_tokenizer, REASONING_ROWS)
    assert e.value.line == 1 and e.value.field == "messages[1]" and "no thinking support" in e.value.problem
    assert "data.reasoning: drop" in e.value.hint
    prepared = prepare(tmp_path, tiny_tokenizer, REASONING_ROWS, reasoning="drop")
    for ex in prepared.train:
        assert (ex["input_ids"], ex["labels"]) == pieces(tiny_tokenizer, [
            ("<|im_start|>user\nTwo plus two?<|im_end|>\n<|im_start|>assistant\n", False),
            ("Four.<|im_end|>", True), ("\n", False)])
        assert "Add them" not in tiny_tokenizer.decode(ex["input_ids"])


# ---- content parts ------------------------------------------------------------------------------

PARTS = [{"messages": [{"role": "user", "content": [{"type": "text", "text": "Part one."},
                                                   {"type": "text", "value": "Part two."}]},
                       {"role": "assistant", "content": [{"type": "text", "text": "Got both."}]}]}]


def test_content_parts_joined_as_the_template_joins_them(tmp_path, tiny_tokenizer):
    tok = with_template(tiny_tokenizer, "parts")  # renders parts with a space between them
    [ex] = prepare(tmp_path, tok, PARTS).train
    as_parts = [{"role": "user", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Got both."}]}]
    # Exactly what the template renders from the parts themselves.
    assert tok.decode(ex["input_ids"]) == tok.apply_chat_template(as_parts, tokenize=False)
    assert trained_text(tok, ex) == "Got both.<|im_end|>"
    assert "Part one. Part two." in tok.decode(ex["input_ids"])


def test_media_parts_and_columns_are_refused(tmp_path, tiny_tokenizer):
    rows = [{"messages": [{"role": "user", "content": [{"type": "image", "url": "x.png"}, {"type": "text", "text": "?"}]},
                          {"role": "assistant", "content": "A cat."}]}]
    with pytest.raises(DataError) as e:
        prepare(tmp_path, tiny_tokenizer, rows)
    assert e.value.field == "messages[0].content[0]" and "image part" in e.value.problem
    rows = [{"messages": [{"role": "user", "content": "What is shown?"}, {"role": "assistant", "content": "A cat."}],
             "images": ["cat.png"]}]
    with pytest.raises(DataError) as e:
        prepare(tmp_path, tiny_tokenizer, rows)
    assert e.value.field == "data.columns" and "images holds media" in e.value.problem
    prepared = prepare(tmp_path, tiny_tokenizer, rows, columns={"messages": "messages"})
    assert prepared.report.sources[0]["columns_ignored"] == {"images": 1}


# ---- plain text, chunking, line endings ---------------------------------------------------------

def test_plain_text_files_by_document_paragraph_and_line(tmp_path, tiny_tokenizer):
    p = tmp_path / "notes.md"
    p.write_text("# Title\r\nFirst paragraph,\r\nstill first.\r\n\r\nSecond paragraph.\r\n\r\n\r\nThird.\r\n",
                 encoding="utf-8")
    doc = prepare_data(DataConfig(path=str(p), validation_split=0), tiny_tokenizer)
    assert doc.format == "text" and len(doc.train) == 1
    [ex] = doc.train
    assert ex["labels"] == ex["input_ids"]
    assert tiny_tokenizer.decode(ex["input_ids"]) == (
        "# Title\nFirst paragraph,\nstill first.\n\nSecond paragraph.\n\n\nThird.\n<|im_end|>")
    para = load_records(DataConfig(path=str(p), sample_by="paragraph"))
    assert para.train == [{"text": "# Title\nFirst paragraph,\nstill first."}, {"text": "Second paragraph."},
                          {"text": "Third."}]
    assert [str(w) for w in para.train_where] == ["line 1", "line 5", "line 8"]
    lines = load_records(DataConfig(path=str(p), sample_by="line"))
    assert len(lines.train) == 5 and [w.line for w in lines.train_where] == [1, 2, 3, 5, 8]


def test_long_documents_chunked_into_windows_or_truncated(tmp_path, tiny_tokenizer):
    text = " ".join(f"The list names item {i} on the shelf." for i in range(30))
    p = tmp_path / "book.txt"
    p.write_text(text, encoding="utf-8")
    whole = tiny_tokenizer(text + "<|im_end|>")["input_ids"]
    assert len(whole) > 3 * 64
    chunked = prepare_data(DataConfig(path=str(p), validation_split=0, max_length=64, long_examples="chunk"),
                           tiny_tokenizer)
    windows = [e["input_ids"] for e in chunked.train]
    assert all(len(w) == 64 for w in windows[:-1]) and 2 <= len(windows[-1]) <= 64
    assert sum(windows, []) == whole[: len(sum(windows, []))] and len(sum(windows, [])) >= len(whole) - 1
    assert all(e["labels"] == e["input_ids"] for e in chunked.train)
    assert chunked.n_truncated == 0 and chunked.report.counts["chunks"] == len(windows) - 1
    cut = prepare_data(DataConfig(path=str(p), validation_split=0, max_length=64), tiny_tokenizer)
    [ex] = cut.train
    assert ex["input_ids"] == whole[:64] and cut.n_truncated == 1
    assert any("were truncated" in w and "line 1" in w and "chunk" in w for w in cut.warnings)
    with pytest.raises(DataError) as e:  # chunking a conversation would cut it mid-turn: refused
        prepare(tmp_path, tiny_tokenizer, [{"prompt": "Q", "completion": "A"}], long_examples="chunk")
    assert e.value.field == "data.long_examples"


def test_line_endings_inside_text_become_newlines(tmp_path, tiny_tokenizer):
    rows = [{"messages": [{"role": "user", "content": "Two lines:\r\nplease."},
                          {"role": "assistant", "content": "One\r\nTwo\rThree"}]}]
    [ex] = prepare(tmp_path, tiny_tokenizer, rows).train
    text = tiny_tokenizer.decode(ex["input_ids"])
    assert "\r" not in text and "Two lines:\nplease." in text and trained_text(tiny_tokenizer, ex) == \
        "One\nTwo\nThree<|im_end|>"


# ---- pandas' JSON shapes ------------------------------------------------------------------------

def test_every_pandas_json_shape(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"instruction": ["Name a metal.", "Name a gas."], "input": ["", ""],
                       "output": ["Iron", "Oxygen"]})
    want = [{"messages": [{"role": "user", "content": "Name a metal."}, {"role": "assistant", "content": "Iron"}]},
            {"messages": [{"role": "user", "content": "Name a gas."}, {"role": "assistant", "content": "Oxygen"}]}]
    for orient in ("records", "columns", "index", "split", "table"):
        p = tmp_path / f"{orient}.json"
        df.to_json(p, orient=orient)
        assert load_records(DataConfig(path=str(p))).train == want, orient
    p = tmp_path / "values.json"
    df.to_json(p, orient="values")
    with pytest.raises(DataError) as e:
        load_records(DataConfig(path=str(p)))
    assert 'orient="values"' in e.value.problem and 'orient="records"' in e.value.hint


# ---- preference and KTO data --------------------------------------------------------------------

Q, A, B = "Name a colour.", "Blue.", "Seven."
SHAPES = [
    ({"prompt": Q, "chosen": A, "rejected": B}, "prompt_chosen_rejected", "text", {"prompt": "prompt", "completion": "chosen"}),
    ({"prompt": [{"role": "user", "content": Q}], "chosen": [{"role": "assistant", "content": A}],
      "rejected": [{"role": "assistant", "content": B}]}, "prompt_chosen_rejected", "messages",
     {"prompt": "prompt", "completion": "chosen"}),
    ({"chosen": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}],
      "rejected": [{"role": "user", "content": Q}, {"role": "assistant", "content": B}]}, "chosen_rejected",
     "messages", {"messages": "chosen"}),
    ({"messages": [{"role": "user", "content": Q}], "chosen": {"role": "assistant", "content": A},
      "rejected": {"role": "assistant", "content": B}}, "messages_chosen_rejected", "turn",
     {"messages": "messages", "assistant": "chosen"}),
    ({"conversations": [{"from": "human", "value": Q}], "chosen": {"from": "gpt", "value": A},
      "rejected": {"from": "gpt", "value": B}}, "sharegpt_chosen_rejected", "turn",
     {"conversations": "conversations", "assistant": "chosen"}),
    ({"instruction": Q, "input": "", "chosen": A, "rejected": B}, "alpaca_chosen_rejected", "text",
     {"instruction": "instruction", "output": "chosen", "input": "input"}),
]


@pytest.mark.parametrize("row,shape,style,mapping", SHAPES, ids=[s[1] + "-" + s[2] for s in SHAPES])
def test_preference_shapes_are_detected_refused_and_mappable(tmp_path, tiny_tokenizer, row, shape, style, mapping):
    found = detect_preference(list(row), [row])
    assert (found.task, found.shape, found.style, found.sft_mapping) == ("paired", shape, style, mapping)
    with pytest.raises(DataError) as e:
        prepare(tmp_path, tiny_tokenizer, [row])
    assert e.value.detected == found and "preference data" in e.value.problem
    # The suggested mapping trains the chosen answer, never the rejected one.
    [ex] = prepare(tmp_path, tiny_tokenizer, [row], columns=mapping).train
    assert trained_text(tiny_tokenizer, ex) == f"{A}<|im_end|>"
    assert B not in tiny_tokenizer.decode(ex["input_ids"])
    # And preference training gets TRL's conversational form of the row.
    rec = preference_record(row, found)
    assert rec == {"prompt": [{"role": "user", "content": Q}], "chosen": [{"role": "assistant", "content": A}],
                   "rejected": [{"role": "assistant", "content": B}]}


def test_implicit_text_prompt_preference_record():
    row = {"chosen": f"\n\nHuman: {Q}\n\nAssistant: {A}", "rejected": f"\n\nHuman: {Q}\n\nAssistant: {B}"}
    shape = detect_preference(list(row), [row])
    assert (shape.shape, shape.style, shape.implicit_prompt) == ("chosen_rejected", "text", True)
    assert preference_record(row, shape) == {"prompt": f"\n\nHuman: {Q}\n\nAssistant: ", "chosen": A, "rejected": B}


def test_kto_label_is_refused_until_mapped_and_then_filters(tmp_path, tiny_tokenizer):
    rows = [{"prompt": "Say hi.", "completion": "Hi.", "label": True},
            {"prompt": "Say hi.", "completion": "Go away.", "label": False},
            {"prompt": "Say bye.", "completion": "Bye.", "label": True}]
    with pytest.raises(DataError) as e:
        prepare(tmp_path, tiny_tokenizer, rows)
    shape = e.value.detected
    assert (shape.task, shape.shape, shape.columns) == (
        "unpaired", "kto_prompt_completion", {"completion": "completion", "label": "label", "prompt": "prompt"})
    assert "answers to avoid" in e.value.problem and "{prompt: prompt, completion: completion, label: label}" in \
        e.value.hint
    assert preference_record(rows[1], shape) == {"prompt": [{"role": "user", "content": "Say hi."}],
                                                 "completion": [{"role": "assistant", "content": "Go away."}],
                                                 "label": False}
    prepared = prepare(tmp_path, tiny_tokenizer, rows, columns=shape.sft_mapping)
    assert [trained_text(tiny_tokenizer, e) for e in prepared.train] == ["Hi.<|im_end|>", "Bye.<|im_end|>"]
    assert [(p["line"], p["status"]) for p in prepared.report.problems] == [(2, "filtered")]
    kto_messages = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                     "label": False}]
    assert detect_preference(["messages", "label"], kto_messages).shape == "kto_messages"


# ---- placeholders, report issues ---------------------------------------------------------------

def test_placeholders_are_named_and_filled_from_replacements(tmp_path, tiny_tokenizer):
    rows = [{"prompt": "Who are you?", "completion": "I am {{name}}, made by {{ company }}."},
            {"prompt": "Hi", "completion": "Hello."}]
    prepared = prepare(tmp_path, tiny_tokenizer, rows)
    [warning] = [w for w in prepared.warnings if "placeholders" in w]
    assert "{{name}}, {{company}}" in warning and "line 1" in warning and "data.replacements" in warning
    assert trained_text(tiny_tokenizer, prepared.train[0]) == "I am {{name}}, made by {{ company }}.<|im_end|>"
    filled = prepare(tmp_path, tiny_tokenizer, rows, replacements={"name": "Ada", "company": "Acme"})
    assert trained_text(tiny_tokenizer, filled.train[0]) == "I am Ada, made by Acme.<|im_end|>"
    assert filled.report.placeholders == {"name": {"count": 1, "filled": True}, "company": {"count": 1, "filled": True}}
    assert not [w for w in filled.warnings if "placeholders" in w]


def test_report_counts_roles_empty_turns_duplicates_and_unanswered_prompts(tmp_path, tiny_tokenizer):
    good = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Yo"}]}
    rows = [good,
            {"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "Yes?"}]},
            good,
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                          {"role": "user", "content": "And then?"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "id": 7}]
    report = prepare(tmp_path, tiny_tokenizer, rows).report
    assert report.roles == {"system": 2, "user": 6, "assistant": 5, "tool": 0}
    assert report.turns == {"min": 2, "mean": 2.6, "max": 3}
    assert [(r["line"], r["detail"]) for r in report.issues["empty_turn"]["rows"]] == [(2, "user turn 1 is whitespace only")]
    assert [r["line"] for r in report.issues["no_answer"]["rows"]] == [4]
    assert report.duplicates["rows"] == 1 and [[g["line"] for g in grp] for grp in report.duplicates["groups"]] == [[1, 3]]
    assert report.sources[0]["columns_ignored"] == {"id": 1}  # named, with how many records have it
    share = report.tokens["trained"] / report.tokens["total"]
    assert 0 < share < 1 and report.tokens["trained_share"] == pytest.approx(share)
    text = report.text()
    for needle in ("Exact duplicates: 1", "Empty or whitespace-only turns: 1", "Prompts without an answer: 1",
                   "Turns by role: system 2, user 6, assistant 5", "carry loss"):
        assert needle in text


def test_bad_function_call_json_names_the_field(tmp_path, tiny_tokenizer):
    rows = [{"conversations": [{"from": "human", "value": "Add."}, {"from": "function_call", "value": "add(2, 3)"},
                               {"from": "observation", "value": "5"}, {"from": "gpt", "value": "5."}]}]
    with pytest.raises(DataError) as e:
        prepare(tmp_path, with_template(tiny_tokenizer, "tools"), rows)
    assert e.value.line == 1 and e.value.field == "conversations[1].value" and "not JSON" in e.value.problem
