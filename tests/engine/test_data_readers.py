"""Every data format × every file type reads to the same internal records; detection and mapping."""

from __future__ import annotations

import json

import pytest

from engine.config import DataConfig
from engine.data import DataError, load_records

MESSAGES = [
    {"messages": [{"role": "system", "content": "Talk like a pirate."},
                  {"role": "user", "content": "What is 2 plus 2?"},
                  {"role": "assistant", "content": "Ahoy! 4 ⚓"}]},
    {"messages": [{"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris."},
                  {"role": "user", "content": "And Italy?"},
                  {"role": "assistant", "content": "Rome."}]},
]
EXPECTED = {
    "messages": MESSAGES,
    "sharegpt": [
        {"messages": [{"role": "system", "content": "Talk like a pirate."},
                      {"role": "user", "content": "What is 2 plus 2?"},
                      {"role": "assistant", "content": "Ahoy! 4 ⚓"}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    ],
    "alpaca": [
        {"messages": [{"role": "user", "content": "Add the numbers.\n\n2 and 3"},
                      {"role": "assistant", "content": "5"}]},
        {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]},
    ],
    "prompt_completion": [{"prompt": "2+2=", "completion": " 4"}, {"prompt": "Sky colour?", "completion": " Blue."}],
    "text": [{"text": "Once upon a time."}, {"text": "The end."}],
}
RAW = {
    "messages": MESSAGES,
    "sharegpt": [
        {"conversations": [{"from": "system", "value": "Talk like a pirate."},
                           {"from": "human", "value": "What is 2 plus 2?"},
                           {"from": "gpt", "value": "Ahoy! 4 ⚓"}]},
        {"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello!"}]},
    ],
    "alpaca": [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
               {"instruction": "Say hi.", "input": "", "output": "Hi!"}],
    "prompt_completion": [{"prompt": "2+2=", "completion": " 4"}, {"prompt": "Sky colour?", "completion": " Blue."}],
    "text": [{"text": "Once upon a time."}, {"text": "The end."}],
}
REASONS = {"messages": "columns messages → messages", "sharegpt": "columns conversations → sharegpt",
           "alpaca": "columns instruction, output, input → alpaca",
           "prompt_completion": "columns prompt, completion → prompt_completion", "text": "columns text → text"}
KINDS = ["jsonl", "json", "json_columns", "csv", "parquet", "arrow_file", "arrow_stream", "saved"]


def write_records(rows: list[dict], kind: str, folder) -> str:
    """Write rows as a file of the given kind; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        p = folder / "d.jsonl"
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif kind == "json":
        p = folder / "d.json"
        p.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif kind == "json_columns":
        p = folder / "d.json"
        p.write_text(json.dumps({k: [r[k] for r in rows] for k in rows[0]}), encoding="utf-8")
    elif kind == "csv":
        import csv

        p = folder / "d.csv"
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:  # conversations go into CSV cells as JSON text
                w.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()})
    elif kind in ("parquet", "arrow_file", "arrow_stream"):
        import pyarrow as pa

        table = pa.Table.from_pylist(rows)
        if kind == "parquet":
            import pyarrow.parquet as pq

            p = folder / "d.parquet"
            pq.write_table(table, p)
        else:
            p = folder / "d.arrow"
            opener = pa.ipc.new_file if kind == "arrow_file" else pa.ipc.new_stream
            with pa.OSFile(str(p), "wb") as sink, opener(sink, table.schema) as writer:
                writer.write_table(table)
    elif kind == "saved":
        import datasets

        p = folder / "saved"
        datasets.Dataset.from_list(rows).save_to_disk(str(p))
    else:
        raise ValueError(kind)
    return str(p)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", list(RAW))
def test_every_format_and_file_type(tmp_path, fmt, kind):
    # Arrow-based kinds store a conversation as a list of structs with every key of every turn
    # (absent ones as null); CSV stores it as JSON text. Both must read back the same.
    path = write_records(RAW[fmt], kind, tmp_path)
    loaded = load_records(DataConfig(path=path))
    assert loaded.format == fmt
    assert loaded.train == EXPECTED[fmt]
    assert loaded.validation == []
    assert loaded.n_skipped == 0
    if kind == "jsonl":
        assert loaded.reason == REASONS[fmt]


def test_explicit_format_matches_auto(tmp_path):
    path = write_records(RAW["alpaca"], "jsonl", tmp_path)
    loaded = load_records(DataConfig(path=path, format="alpaca"))
    assert loaded.train == EXPECTED["alpaca"]
    assert "data.format" in loaded.reason


def test_alpaca_system_column_and_aliases(tmp_path):
    rows = [{"instruction": "Greet.", "context": "politely", "response": "Hello.", "system": "Be kind."}]
    loaded = load_records(DataConfig(path=write_records(rows, "jsonl", tmp_path)))
    assert loaded.format == "alpaca"
    assert loaded.train[0]["messages"] == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Greet.\n\npolitely"},
        {"role": "assistant", "content": "Hello."}]


@pytest.mark.parametrize("cols", [("question", "answer"), ("input", "output"), ("query", "response")])
def test_prompt_completion_aliases(tmp_path, cols):
    rows = [{cols[0]: "Q?", cols[1]: "A."}]
    loaded = load_records(DataConfig(path=write_records(rows, "jsonl", tmp_path)))
    assert loaded.format == "prompt_completion"
    assert loaded.train == [{"prompt": "Q?", "completion": "A."}]
    assert loaded.reason == f"columns {cols[0]}, {cols[1]} → prompt_completion"


def test_column_mapping_overrides_detection(tmp_path):
    rows = [{"q": "Q?", "a": "A.", "text": "ignored"}]
    path = write_records(rows, "csv", tmp_path)
    loaded = load_records(DataConfig(path=path, columns={"prompt": "q", "completion": "a"}))
    assert loaded.format == "prompt_completion"
    assert loaded.train == [{"prompt": "Q?", "completion": "A."}]
    assert "q" in loaded.reason and "prompt_completion" in loaded.reason


def test_column_mapping_for_messages(tmp_path):
    rows = [{"dialog": MESSAGES[0]["messages"], "id": 1}]
    loaded = load_records(DataConfig(path=write_records(rows, "jsonl", tmp_path), columns={"messages": "dialog"}))
    assert loaded.format == "messages"
    assert loaded.train == [MESSAGES[0]]


def test_messages_column_with_sharegpt_turns_and_content_parts(tmp_path):
    rows = [{"messages": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                          {"role": "assistant", "content": "Yo"}]}]
    loaded = load_records(DataConfig(path=write_records(rows, "jsonl", tmp_path)))
    assert loaded.format == "sharegpt"
    assert loaded.train[1]["messages"][0] == {"role": "user", "content": "Hi there"}


def test_validation_path_and_dataset_dict(tmp_path):
    import datasets

    train = write_records(RAW["text"], "jsonl", tmp_path / "t")
    val = write_records([{"text": "held out"}], "csv", tmp_path / "v")
    loaded = load_records(DataConfig(path=train, validation_path=val))
    assert loaded.validation == [{"text": "held out"}]

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(RAW["alpaca"]),
                          "test": datasets.Dataset.from_list(RAW["alpaca"][:1])}).save_to_disk(str(folder))
    loaded = load_records(DataConfig(path=str(folder)))
    assert loaded.format == "alpaca"
    assert loaded.train == EXPECTED["alpaca"]
    assert loaded.validation == EXPECTED["alpaca"][:1]


def test_relative_path_resolves_against_base_dir_then_repo(tmp_path):
    write_records(RAW["text"], "jsonl", tmp_path / "data")
    assert load_records(DataConfig(path="data/d.jsonl"), base_dir=tmp_path).train == EXPECTED["text"]
    # The default data.path (the bundled demo) works from any working directory.
    assert len(load_records(DataConfig(), base_dir=tmp_path).train) >= 300


def test_jsonl_tolerates_bom_and_blank_lines(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b'{"text": "a"}\n\n   \n{"text": "b"}\n')
    assert load_records(DataConfig(path=str(p))).train == [{"text": "a"}, {"text": "b"}]


def test_unknown_format_name_in_mapping_is_an_error(tmp_path):
    path = write_records(RAW["text"], "jsonl", tmp_path)
    with pytest.raises(DataError) as e:
        load_records(DataConfig(path=path, columns={"answer": "text"}))
    assert e.value.field == "data.columns.answer"


def test_arrow_file_written_by_datasets(tmp_path):
    # save_to_disk writes Arrow IPC *stream* files; pointing data.path at one must work too.
    path = write_records(RAW["alpaca"], "saved", tmp_path)
    [arrow] = sorted((tmp_path / "saved").glob("*.arrow"))
    assert path and load_records(DataConfig(path=str(arrow))).train == EXPECTED["alpaca"]
