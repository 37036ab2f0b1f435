"""Every bad input is a DataError that names the file, the line/record and the field, and says
what to do; no traceback chain leaks into the message."""

from __future__ import annotations

import json

import pytest

from engine.config import DataConfig
from engine.data import DataError, load_records, prepare_data


def jsonl(tmp_path, lines, name="train.jsonl") -> str:
    p = tmp_path / name
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return str(p)


def error_of(cfg: DataConfig, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_records(cfg, **kw)
    e = info.value
    assert e.__suppress_context__ or e.__context__ is None  # no chained traceback
    return e


GOOD = {"prompt": "Q?", "completion": "A."}


def test_missing_file(tmp_path):
    e = error_of(DataConfig(path="data/nope.jsonl"), base_dir=tmp_path)
    assert e.file == "data/nope.jsonl"
    assert str(e).startswith("data/nope.jsonl: file not found (looked in ")
    assert "data.path" in e.hint


@pytest.mark.parametrize("name,content", [("e.jsonl", b""), ("e.jsonl", b"\n  \n"), ("e.json", b"[]"),
                                          ("e.csv", b"prompt,completion\n"), ("e.json", b"  ")])
def test_empty_file(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    e = error_of(DataConfig(path=str(p)))
    assert "empty" in str(e) and e.file == str(p)


def test_malformed_json_line_names_the_line(tmp_path):
    path = jsonl(tmp_path, [GOOD, GOOD, '{"prompt": "Q?" "completion": "A."}', GOOD])
    e = error_of(DataConfig(path=path))
    assert e.line == 3 and e.file == path
    assert str(e) == (f"{path} line 3: not valid JSON (Expecting ',' delimiter at column 17). "
                      "Fix the line, or set data.skip_bad_lines: true to skip bad lines.")


def test_skip_bad_lines_skips_and_counts(tmp_path):
    path = jsonl(tmp_path, [GOOD, "{oops", GOOD, "[1, 2]", {"prompt": 5, "completion": "x"}, GOOD])
    loaded = load_records(DataConfig(path=path, skip_bad_lines=True))
    assert len(loaded.train) == 3 and loaded.n_skipped == 3
    assert len(loaded.warnings) == 1
    assert "Skipped 3 bad lines" in loaded.warnings[0] and "line 2" in loaded.warnings[0]


def test_all_lines_bad_is_an_error_even_when_skipping(tmp_path):
    e = error_of(DataConfig(path=jsonl(tmp_path, ["{", "}"]), skip_bad_lines=True))
    assert "no usable records" in str(e) and "line 1" in str(e)


def test_unknown_columns_list_found_and_expected(tmp_path):
    e = error_of(DataConfig(path=jsonl(tmp_path, [{"foo": "x", "bar": "y"}])))
    msg = str(e)
    assert "columns foo, bar" in msg
    for expected in ("messages", "conversations", "instruction + output", "prompt + completion", "text"):
        assert expected in msg
    assert "data.columns" in msg and "{prompt: foo, completion: bar}" in msg


def test_explicit_format_with_wrong_columns(tmp_path):
    e = error_of(DataConfig(path=jsonl(tmp_path, [{"q": "x", "a": "y"}]), format="alpaca"))
    assert "format alpaca needs the columns instruction and output" in str(e)
    assert "found: q, a" in str(e) and e.field == "data.columns"


def test_mapping_to_a_missing_column(tmp_path):
    e = error_of(DataConfig(path=jsonl(tmp_path, [GOOD]), columns={"prompt": "question"}))
    assert e.field == "data.columns.prompt"
    assert "'question'" in str(e) and "columns found: prompt, completion" in str(e)


def test_record_missing_a_field(tmp_path):
    path = jsonl(tmp_path, [GOOD, {"prompt": "only a prompt"}])
    e = error_of(DataConfig(path=path))
    assert e.line == 2 and e.field == "completion"
    assert "line 2, field completion: has no 'completion' field" in str(e)


def test_non_utf8_jsonl_names_line_and_byte_offset(tmp_path):
    p = tmp_path / "latin1.jsonl"
    good = (json.dumps(GOOD) + "\n").encode()
    p.write_bytes(good + '{"prompt": "café", "completion": "x"}\n'.encode("latin-1"))
    e = error_of(DataConfig(path=str(p)))
    assert e.line == 2
    offset = len(good) + len('{"prompt": "caf')
    assert f"not UTF-8 text (byte 0xe9 at byte offset {offset} of the file)" in str(e)
    assert "Save the file as UTF-8" in str(e)
    loaded = load_records(DataConfig(path=str(p), skip_bad_lines=True))
    assert loaded.n_skipped == 1 and len(loaded.train) == 1


def test_non_utf8_csv_names_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"prompt,completion\nQ,A\nQ2,caf\xe9\n")
    e = error_of(DataConfig(path=str(p)))
    assert e.line == 3 and "byte 0xe9 at byte offset 28" in str(e)  # 18 + 4 + len("Q2,caf")


def test_number_where_text_belongs(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([GOOD, {"prompt": "2+2?", "completion": 4}]))
    e = error_of(DataConfig(path=str(p)))
    assert e.record == 2 and e.field == "completion"
    assert str(e).startswith(f"{p} record 2, field completion: expected text but found the number 4.")
    assert "quotes" in e.hint


def test_number_in_a_message(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": 4}]}]
    e = error_of(DataConfig(path=jsonl(tmp_path, rows)))
    assert e.line == 1 and e.field == "messages[1].content"


def test_conversation_without_assistant_turn(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
            {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}]
    e = error_of(DataConfig(path=jsonl(tmp_path, rows)))
    assert e.line == 2 and "no assistant turn" in str(e)
    loaded = load_records(DataConfig(path=jsonl(tmp_path, rows), skip_bad_lines=True))
    assert len(loaded.train) == 1 and loaded.n_skipped == 1


def test_unknown_role(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Yo"}]}]
    e = error_of(DataConfig(path=jsonl(tmp_path, rows)))
    assert e.field == "conversations[1].from" and "'robot'" in str(e)


def test_json_with_several_values_suggests_jsonl(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
    e = error_of(DataConfig(path=str(p)))
    assert e.line == 2 and ".jsonl" in e.hint


def test_ragged_csv_and_columns_of_different_lengths(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion\nQ,A\nQ2,A2,extra\n")
    assert error_of(DataConfig(path=str(p))).record == 2
    p = tmp_path / "cols.json"
    p.write_text(json.dumps({"prompt": ["a", "b"], "completion": ["c"]}))
    assert "different lengths" in str(error_of(DataConfig(path=str(p))))


def test_unsupported_file_and_plain_folder(tmp_path):
    # .txt was refused here before issue 13; plain text is read now (test_data_text.py), so the
    # unsupported type is one no reader exists for.
    (tmp_path / "d.docx").write_text("hello")
    assert "unsupported file type '.docx'" in str(error_of(DataConfig(path=str(tmp_path / "d.docx"))))
    (tmp_path / "folder").mkdir()
    assert "save_to_disk" in str(error_of(DataConfig(path=str(tmp_path / "folder"))))


def test_damaged_parquet(tmp_path):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    assert "not a readable Parquet file" in str(error_of(DataConfig(path=str(p))))


# ---- errors found while tokenizing ------------------------------------------------------------

def long_rows(n_short=3, n_long=2):
    short = {"prompt": "Hi", "completion": "Yo"}
    long_ = {"prompt": "Tell a long story.", "completion": "answer " * 60}
    return [short] * n_short + [long_] * n_long


def test_long_examples_are_truncated_and_counted(tmp_path, tiny_tokenizer):
    cfg = DataConfig(path=jsonl(tmp_path, long_rows()), max_length=64, validation_split=0)
    warnings = []

    class Rep:
        def log(self, msg):
            pass

        def warn(self, msg):
            warnings.append(msg)

    prepared = prepare_data(cfg, tiny_tokenizer, reporter=Rep())
    assert prepared.n_truncated == 2 and prepared.n_dropped == 0
    assert len(prepared.train) == 5 and max(prepared.stats["lengths"]) == 64
    assert any("2 of 5 examples were longer than max_length=64 and were truncated" in w for w in warnings)
    assert warnings == prepared.warnings


def test_drop_long_drops_them(tmp_path, tiny_tokenizer):
    cfg = DataConfig(path=jsonl(tmp_path, long_rows()), max_length=64, validation_split=0, drop_long=True)
    prepared = prepare_data(cfg, tiny_tokenizer)
    assert prepared.n_dropped == 2 and prepared.n_truncated == 0 and len(prepared.train) == 3
    assert any("were dropped (data.drop_long)" in w for w in prepared.warnings)


def test_example_with_no_trained_token_after_truncation_is_dropped(tmp_path, tiny_tokenizer):
    rows = [{"prompt": "Hi", "completion": "Yo"}, {"prompt": "word " * 60, "completion": "cut off"}]
    cfg = DataConfig(path=jsonl(tmp_path, rows), max_length=32, validation_split=0)
    prepared = prepare_data(cfg, tiny_tokenizer)
    assert len(prepared.train) == 1 and prepared.n_dropped == 1 and prepared.n_truncated == 0
    assert any("no answer tokens left" in w for w in prepared.warnings)


def test_everything_dropped_is_an_error(tmp_path, tiny_tokenizer):
    cfg = DataConfig(path=jsonl(tmp_path, long_rows(0, 2)), max_length=16, validation_split=0, drop_long=True)
    with pytest.raises(DataError, match="no training examples left"):
        prepare_data(cfg, tiny_tokenizer)


def test_chat_template_rejection_names_the_record(tmp_path, tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('System role not supported') }}{% endif %}"
                         "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}")
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}]
    cfg = DataConfig(path=jsonl(tmp_path, rows * 3), validation_split=0, system_prompt="Be brief.")
    with pytest.raises(DataError) as e:
        prepare_data(cfg, tok)
    assert e.value.line == 1 and "chat template rejected" in str(e.value)
    assert "data.system_prompt" in e.value.hint
