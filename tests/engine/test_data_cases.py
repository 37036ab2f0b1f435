"""The data cases of 2026-11-29 (tests/data/cases/, copies of ../shared/cases): each input read as
the case asks, the trained tokens asserted exactly, or the message (file, line, reason) asserted
with no model weights loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.data import IGNORE_INDEX, DataError, prepare_data

HERE = Path(__file__).resolve().parent
CASES = HERE.parent / "data" / "cases"
TEMPLATES = HERE.parent / "data" / "templates"
REPO = HERE.parents[1]


def case(name: str, tmp_path: Path, model_dir, **data) -> tuple[RunConfig, Path]:
    """The case folder copied to tmp_path with its placeholders filled; (config, run file)."""
    folder = tmp_path / name
    shutil.copytree(CASES / name, folder)
    run = folder / "run.yaml"
    run.write_text(run.read_text().replace("PLACEHOLDER_MODEL", str(model_dir))
                   .replace("PLACEHOLDER_OUT", str(tmp_path / "out")), encoding="utf-8")
    cfg = RunConfig.load(run)
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg, run


def pieces(tok, parts) -> tuple[list[int], list[int]]:
    """ids and labels built independently of the pipeline: the ids of the whole text as inference
    tokenizes it, each labelled by the (text, trained) piece it falls in. No token may straddle two
    pieces (the expectation would be ambiguous)."""
    text = "".join(t for t, _ in parts)
    bounds, pos = [], 0
    for t, trained in parts:
        bounds.append((pos, pos + len(t), trained))
        pos += len(t)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        [(lo, hi, trained)] = [b for b in bounds if b[0] <= start < b[1]]
        assert end <= hi, f"token {text[start:end]!r} straddles two pieces"
        labels.append(tid if trained else IGNORE_INDEX)
    return list(enc["input_ids"]), labels


def with_template(tok, name: str):
    import copy

    t = copy.deepcopy(tok)
    t.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
    return t


@pytest.fixture(scope="module")
def tools_model_dir(tmp_path_factory):
    """The tiny model with a chat template that renders tools and reasoning (tests/data/templates)."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_tools") / "model",
                           chat_template=(TEMPLATES / "tools.jinja").read_text())


def train_without_weights(cfg, monkeypatch):
    """Run train(); loading any model weights fails the test. Returns (result, events)."""
    import transformers

    from engine.events import ListSink
    from engine.training import train

    def no_weights(*a, **k):
        raise AssertionError("model weights were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    return result, sink


# ---- content-parts-value -----------------------------------------------------------------------

def test_content_parts_value_and_loss_weight(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("content-parts-value", tmp_path, tiny_model_dir)
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    assert len(prepared.train) == 2 and prepared.n_skipped == 0
    for ex, (q, a) in zip(prepared.train, [("Say hello.", "Hello."), ("Say bye.", "Bye.")]):
        assert (ex["input_ids"], ex["labels"]) == pieces(tiny_tokenizer, [
            (f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n", False), (f"{a}<|im_end|>", True),
            ("\n", False)])


def test_loss_weight_decides_which_turns_carry_loss(tmp_path, tiny_tokenizer):
    from engine.config import DataConfig

    rows = [{"messages": [{"role": "user", "content": "Hi.", "loss_weight": 1},
                          {"role": "assistant", "content": "Draft.", "loss_weight": 0},
                          {"role": "user", "content": "Again."},
                          {"role": "assistant", "content": "Final.", "loss_weight": 1.0}]}]
    p = tmp_path / "w.jsonl"
    p.write_text(json.dumps(rows[0]) + "\n")
    [ex] = prepare_data(DataConfig(path=str(p), validation_split=0), tiny_tokenizer).train
    assert (ex["input_ids"], ex["labels"]) == pieces(tiny_tokenizer, [
        ("<|im_start|>user\nHi.<|im_end|>", True),
        ("\n<|im_start|>assistant\nDraft.<|im_end|>\n<|im_start|>user\nAgain.<|im_end|>\n<|im_start|>assistant\n",
         False),
        ("Final.<|im_end|>", True), ("\n", False)])
    # A weight between 0 and 1 is named, with its line and field, not silently rounded.
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi."},
                                          {"role": "assistant", "content": "Yo.", "loss_weight": 0.5}]}) + "\n")
    with pytest.raises(DataError) as e:
        prepare_data(DataConfig(path=str(p), validation_split=0), tiny_tokenizer)
    assert e.value.line == 1 and e.value.field == "messages[1].loss_weight" and "0.5" in e.value.problem


# ---- tool-calls-in-messages --------------------------------------------------------------------

def test_tool_calls_in_messages_without_tool_support_names_every_line(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("tool-calls-in-messages", tmp_path, tiny_model_dir)
    assert cfg.data.skip_bad_lines
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    problems = prepared.report.problems
    assert [(p["line"], p["status"]) for p in problems] == [(1, "skipped"), (2, "skipped")]
    assert "tool calls, tool results" in problems[0]["reason"] and "cannot render tools" in problems[0]["reason"]
    assert "uses tools (tool results)" in problems[1]["reason"]  # the function role is a tool result
    assert any("Skipped 2 bad lines" in w and "line 1" in w and "line 2" in w for w in prepared.warnings)
    # Line 3: the text parts joined as the template would: it renders content only as text, so a newline.
    [ex] = prepared.train
    assert (ex["input_ids"], ex["labels"]) == pieces(tiny_tokenizer, [
        ("<|im_start|>user\nPart one.\nPart two.<|im_end|>\n<|im_start|>assistant\n", False),
        ("Both parts received.<|im_end|>", True), ("\n", False)])
    assert any("joined with a newline" in n for n in prepared.report.template)


def test_tool_calls_without_tool_support_stop_before_weights_load(tmp_path, tiny_model_dir, monkeypatch):
    cfg, _ = case("tool-calls-in-messages", tmp_path, tiny_model_dir, skip_bad_lines=False)
    result, sink = train_without_weights(cfg, monkeypatch)
    assert result.status == "failed"
    error = sink.of("failed")[0]["error"]
    assert error.startswith(f"{cfg.data.path} line 1: uses tools (tool calls, tool results), but the model's chat "
                            "template cannot render tools")
    assert "1 more bad line: line 2" in error and "model weights" not in error
    assert not sink.of("started")


def test_tool_calls_in_messages_through_a_template_with_tools(tmp_path, tiny_model_dir, tiny_tokenizer):
    # The tiny tokenizer splits finely: 128 tokens (the case's max_length) would cut the answer off.
    cfg, _ = case("tool-calls-in-messages", tmp_path, tiny_model_dir, max_length=512)
    tok = with_template(tiny_tokenizer, "tools")
    prepared = prepare_data(cfg.data, tok)
    assert prepared.n_skipped == 0 and len(prepared.train) == 3
    call, result, parts = prepared.train
    # The assistant's call is trained, the tool's result is not, the final answer is.
    assert (call["input_ids"], call["labels"]) == pieces(tok, [
        ("<|im_start|>user\nWhat is the weather in Oslo?<|im_end|>\n<|im_start|>assistant\n", False),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call><|im_end|>', True),
        ('\n<|im_start|>tool\n{"temp_c": 4}<|im_end|>\n<|im_start|>assistant\n', False),
        ("It is 4 degrees in Oslo.<|im_end|>", True), ("\n", False)])
    assert (result["input_ids"], result["labels"]) == pieces(tok, [
        ("<|im_start|>user\nLook up the capital of Peru.<|im_end|>\n<|im_start|>tool\ncapital=Lima<|im_end|>\n"
         "<|im_start|>assistant\n", False), ("The capital of Peru is Lima.<|im_end|>", True), ("\n", False)])
    assert tok.decode(parts["input_ids"]).startswith("<|im_start|>user\nPart one.\nPart two.<|im_end|>")


# ---- sharegpt-tool-calls -----------------------------------------------------------------------

def test_sharegpt_tool_calls_with_the_tools_schema(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("sharegpt-tool-calls", tmp_path, tiny_model_dir, max_length=512)
    tok = with_template(tiny_tokenizer, "tools")
    prepared = prepare_data(cfg.data, tok)
    assert prepared.format == "sharegpt" and len(prepared.train) == 2
    schema = '{"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": ' \
             '{"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}'
    system = f"<|im_start|>system\n# Tools\n<tools>\n{schema}\n</tools><|im_end|>\n"
    first, second = prepared.train
    assert (first["input_ids"], first["labels"]) == pieces(tok, [
        (system + "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n", False),
        ('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call><|im_end|>', True),
        ('\n<|im_start|>tool\n{"result": 5}<|im_end|>\n<|im_start|>assistant\n', False),
        ("2 + 3 is 5.<|im_end|>", True), ("\n", False)])
    assert (second["input_ids"], second["labels"]) == pieces(tok, [
        (system + "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello.<|im_end|>", True), ("\n", False)])
    src = prepared.report.sources[0]
    assert src["columns_used"] == ["conversations", "tools"] and src["columns_ignored"] == {}


def test_sharegpt_tools_without_tool_support_is_one_message_before_weights(tmp_path, tiny_model_dir, monkeypatch):
    cfg, _ = case("sharegpt-tool-calls", tmp_path, tiny_model_dir)
    result, sink = train_without_weights(cfg, monkeypatch)
    assert result.status == "failed"
    [failed] = sink.of("failed")
    assert failed["error"] == (
        f"{cfg.data.path} field data.columns: the column tools holds tool schemas, but the model's chat template "
        "cannot render tools: it drops the tools schema and tool calls. Use a model whose chat template supports "
        "tools (tools=, tool_calls and role tool), or set data.skip_bad_lines: true to skip the rows that use "
        "tools (each is listed).")


# ---- preference-data-as-sft --------------------------------------------------------------------

def test_preference_data_is_refused_before_weights_load(tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch):
    cfg, _ = case("preference-data-as-sft", tmp_path, tiny_model_dir)
    with pytest.raises(DataError) as e:
        prepare_data(cfg.data, tiny_tokenizer)
    shape = e.value.detected
    assert shape.task == "paired" and shape.shape == "sharegpt_chosen_rejected" and shape.style == "turn"
    assert shape.columns == {"chosen": "chosen", "rejected": "rejected", "conversations": "conversations"}
    assert e.value.field == "data.columns" and "preference data" in e.value.problem
    assert "data.columns: {conversations: conversations, assistant: chosen}" in e.value.hint
    # skip_bad_lines does not turn preference data into SFT either.
    cfg.data.skip_bad_lines = True
    with pytest.raises(DataError, match="preference data"):
        prepare_data(cfg.data, tiny_tokenizer)
    result, sink = train_without_weights(cfg, monkeypatch)
    assert result.status == "failed" and "preference data" in sink.of("failed")[0]["error"]


def test_preference_data_mapped_to_sft_trains_the_chosen_answers(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("preference-data-as-sft", tmp_path, tiny_model_dir,
                  columns={"conversations": "conversations", "assistant": "chosen"})
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    first, second = prepared.train
    assert (first["input_ids"], first["labels"]) == pieces(tiny_tokenizer, [
        ("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n", False),
        ("Blue.<|im_end|>", True), ("\n", False)])
    assert (second["input_ids"], second["labels"]) == pieces(tiny_tokenizer, [
        ("<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n", False), ("Hi.<|im_end|>", True),
        ("\n<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n", False),
        ("An apple.<|im_end|>", True), ("\n", False)])
    assert "Seven." not in tiny_tokenizer.decode(first["input_ids"])  # rejected is never read
    assert prepared.report.sources[0]["columns_ignored"] == {"rejected": 2}


# ---- csv-cr-and-pandas-json --------------------------------------------------------------------

def test_csv_cell_with_crlf_trains_a_newline(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("csv-cr-and-pandas-json", tmp_path, tiny_model_dir)
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    first, second = prepared.train
    assert (first["input_ids"], first["labels"]) == pieces(tiny_tokenizer, [
        ("<|im_start|>user\nList two seasons, one per line.<|im_end|>\n<|im_start|>assistant\n", False),
        ("Winter\nSummer<|im_end|>", True), ("\n", False)])
    assert "\r" not in tiny_tokenizer.decode(first["input_ids"] + second["input_ids"])


def test_pandas_default_json_loads(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("csv-cr-and-pandas-json", tmp_path, tiny_model_dir)
    cfg.data.path = str(Path(cfg.data.path).with_name("pandas_columns.json"))
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    assert [tiny_tokenizer.decode([t for t, lab in zip(e["input_ids"], e["labels"]) if lab != IGNORE_INDEX])
            for e in prepared.train] == ["Iron<|im_end|>", "Oxygen<|im_end|>"]
    assert prepared.report.sources[0]["shape"] == 'JSON, pandas orient="columns" (the to_json default)'


# ---- dropped-examples-by-line ------------------------------------------------------------------

def test_dropped_examples_are_named_by_line(tmp_path, tiny_model_dir, tiny_tokenizer):
    cfg, _ = case("dropped-examples-by-line", tmp_path, tiny_model_dir)
    prepared = prepare_data(cfg.data, tiny_tokenizer)
    [dropped] = [w for w in prepared.warnings if "no answer tokens" in w]
    assert dropped.startswith("1 of 3 examples had no answer tokens left to learn from within 32 tokens and were "
                              f"dropped ({cfg.data.path} line 2).")
    problems = {p["line"]: p for p in prepared.report.problems}
    assert problems[2]["status"] == "dropped_untrained"
    # The tiny tokenizer splits finely, so lines 1 and 3 do not fit 32 tokens either: truncated, each named.
    assert {n: p["status"] for n, p in problems.items() if n != 2} == {1: "truncated", 3: "truncated"}
    assert all(p["tokens"] > 32 for p in problems.values())


def test_data_report_lists_every_dropped_line(tmp_path, tiny_model_dir):
    _, run = case("dropped-examples-by-line", tmp_path, tiny_model_dir)
    out = subprocess.run([sys.executable, "-m", "engine", "data", str(run), "--json"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [(p["line"], p["status"]) for p in report["problems"]] == [
        (1, "truncated"), (2, "dropped_untrained"), (3, "truncated")]
    assert report["counts"]["train_examples"] == 2 and report["lengths"]["over_limit"] == 3


# ---- relative-data-path ------------------------------------------------------------------------

def test_relative_data_path_from_another_folder(tmp_path, tiny_model_dir):
    _, run = case("relative-data-path", tmp_path, tiny_model_dir)
    text = run.read_text().replace("/tmp/x1-out", str(tmp_path / "x1-out"))
    run.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PEFT_STUDIO_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "engine", "train", "../relative-data-path/run.yaml", "--format",
                          "json", "--no-stdin"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=600)
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "finished", out.stdout[-2000:] + out.stderr[-2000:]
    # The run folder's copy of the config names the file the run file meant.
    saved = RunConfig.load(tmp_path / "x1-out" / "run.yaml")
    assert saved.data.path == str(tmp_path / "relative-data-path" / "pc.jsonl")


def test_relative_paths_resolve_at_load_for_every_verb(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text('{"text": "a"}\n')
    (folder / "run.yaml").write_text("data: {path: data/train.jsonl, validation_path: data/val.jsonl, "
                                     "sources: [data/train.jsonl, {path: data/train.jsonl, weight: 2}]}\n")
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig.load("project/run.yaml")
    assert cfg.source_dir == str(folder)
    assert cfg.data.path == str(folder / "data" / "train.jsonl")
    # A file that is not there yet is named from the run file's folder all the same.
    assert cfg.data.validation_path == str(folder / "data" / "val.jsonl")
    assert cfg.data.sources == [str(folder / "data" / "train.jsonl"),
                                {"path": str(folder / "data" / "train.jsonl"), "weight": 2}]
    # Overrides from the command line keep the recorded folder; the bundled demo default still works.
    assert cfg.with_overrides(["train.lr=0.1"]).source_dir == str(folder)
    # Every verb reads run files through RunConfig.load: train, data and compare (load_config),
    # estimate (load_run); export reads the run folder's copy, written with these absolute paths.
    from engine.cli.common import load_config
    from engine.cli.estimate import load_run

    for loaded in (load_config("project/run.yaml", ["train.lr=0.1"]), load_run("project/run.yaml")):
        assert loaded.data.path == str(folder / "data" / "train.jsonl")
    assert RunConfig.load(_write(tmp_path / "x.yaml", "train: {lr: 0.1}\n")).data.path == "resources/demo/train.jsonl"


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


# ---- `peft-studio data` on every case ----------------------------------------------------------

@pytest.mark.parametrize("name,code,needle", [
    ("content-parts-value", 0, "Tokens trained:"),
    ("tool-calls-in-messages", 0, "tools.jsonl line 2: uses tools (tool results)"),
    ("sharegpt-tool-calls", 2, "cannot render tools"),
    ("preference-data-as-sft", 2, "this is preference data"),
    ("csv-cr-and-pandas-json", 0, "Source "),
    ("dropped-examples-by-line", 0, "trunc.jsonl line 2: "),
    ("relative-data-path", 0, "columns used: prompt, completion"),
])
def test_data_verb_on_every_case(tmp_path, tiny_model_dir, capsys, name, code, needle):
    from engine.cli import main

    _, run = case(name, tmp_path, tiny_model_dir)
    assert main(["data", str(run), "--quiet"]) == code
    out = capsys.readouterr()
    assert needle in (out.out if code == 0 else out.err)
    if code == 0:
        assert "Format:" in out.out and "Token lengths (before truncation)" in out.out
