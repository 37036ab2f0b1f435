"""The datasets pipeline itself: the cache (a rerun does no work; a change does), workers give the
same result as one process, mixing by weight, Examples, the fast preview of a big file, the
progressive statistics, and the `data` / `cache` verbs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.config import DataConfig
from engine.data import (
    DataError,
    Examples,
    cache,
    iter_statistics,
    prepare_data,
    preview,
)

REPO = Path(__file__).resolve().parents[2]


def jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What is {i} plus {i % 7}?" + " Why?" * (i % 4)},
                         {"role": "assistant", "content": f"It is {i + i % 7}." + " Aye." * (i % 5)}]}


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("PEFT_STUDIO_DATA_CACHE", str(root))
    return root


def rows_of(examples) -> list[tuple]:
    return [(tuple(e["input_ids"]), tuple(e["labels"])) for e in examples]


# ---- cache --------------------------------------------------------------------------------------

def test_a_rerun_comes_from_the_cache_and_a_change_does_not(tmp_path, tiny_tokenizer, private_cache):
    path = jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(40)])
    cfg = DataConfig(path=path, validation_split=0.1)
    first = prepare_data(cfg, tiny_tokenizer)
    assert not first.stats["cached"]
    kinds = sorted(e.kind for e in cache.entries())
    assert kinds == ["prepared", "raw"]
    again = prepare_data(cfg, tiny_tokenizer)
    assert again.stats["cached"]
    assert rows_of(again.train) == rows_of(first.train) and rows_of(again.eval) == rows_of(first.eval)
    assert again.report.to_dict() == first.report.to_dict()
    assert len(cache.entries()) == 2  # nothing new was written
    # Settings that change the tokens, the tokenizer's template and the file itself each miss.
    assert not prepare_data(DataConfig(path=path, validation_split=0.1, max_length=40), tiny_tokenizer).stats["cached"]
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = tok.chat_template.replace("<|im_start|>", "<|im_start|> ")
    assert not prepare_data(cfg, tok).stats["cached"]
    jsonl(Path(path), [chat(i) for i in range(41)])
    changed = prepare_data(cfg, tiny_tokenizer)
    assert not changed.stats["cached"] and len(changed.train) + len(changed.eval) == 41
    # A different seed or split reuses the tokens: only the selection changes.
    assert prepare_data(DataConfig(path=path, validation_split=0.2), tiny_tokenizer, seed=3).stats["cached"]


def test_cache_verb_lists_and_clears(tmp_path, tiny_tokenizer, private_cache, capsys):
    from engine.cli import main

    prepare_data(DataConfig(path=jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(5)])), tiny_tokenizer)
    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["root"] == str(private_cache) and {e["kind"] for e in listed["entries"]} == {"raw", "prepared"}
    assert all(e["bytes"] > 0 and e["source"] == str(tmp_path / "d.jsonl") for e in listed["entries"])
    assert main(["cache"]) == 0
    assert "2 entries" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "Removed 2 entries" in capsys.readouterr().out and cache.entries() == []


def test_cache_keeps_under_its_size_limit(tmp_path, tiny_tokenizer, private_cache, monkeypatch):
    for k in range(3):
        prepare_data(DataConfig(path=jsonl(tmp_path / f"d{k}.jsonl", [chat(i) for i in range(30 + k)])),
                     tiny_tokenizer)
    sizes = {e.key: e.size for e in cache.entries()}
    newest = cache.entries()[0]
    monkeypatch.setenv("PEFT_STUDIO_DATA_CACHE_GB", str((newest.size + 1) / 1e9))
    removed = cache.enforce_limit(keep={newest.key})
    assert [e.key for e in cache.entries()] == [newest.key]
    assert sum(e.size for e in removed) == sum(sizes.values()) - newest.size


def test_two_preparations_at_once_prepare_once(tmp_path, tiny_tokenizer, private_cache):
    # As two ranks of `accelerate launch` do: the second waits for the first one's entry.
    path = jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(60)])
    results = []

    def prepare():
        results.append(prepare_data(DataConfig(path=path), tiny_tokenizer))

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.stats["cached"] for r in results) == [False, True]
    assert rows_of(results[0].train) == rows_of(results[1].train)
    assert sorted(e.kind for e in cache.entries()) == ["prepared", "raw"]


def test_cache_off_prepares_again(tmp_path, tiny_tokenizer, private_cache):
    path = jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(5)])
    a = prepare_data(DataConfig(path=path, cache=False), tiny_tokenizer)
    b = prepare_data(DataConfig(path=path, cache=False), tiny_tokenizer)
    assert not a.stats["cached"] and not b.stats["cached"] and rows_of(a.train) == rows_of(b.train)


# ---- workers, Examples ----------------------------------------------------------------------------

def test_two_workers_give_what_one_process_gives(tmp_path, tiny_tokenizer, private_cache):
    rows = [chat(i) for i in range(300)]
    rows[17] = {"messages": [{"role": "user", "content": "no answer"}]}
    path = jsonl(tmp_path / "d.jsonl", rows)
    one = prepare_data(DataConfig(path=path, skip_bad_lines=True, max_length=40), tiny_tokenizer, num_proc=1)
    cache.clear()
    two = prepare_data(DataConfig(path=path, skip_bad_lines=True, max_length=40), tiny_tokenizer, num_proc=2)
    assert not two.stats["cached"]
    [entry] = [e for e in cache.entries() if e.kind == "prepared"]
    assert entry.meta["procs"] == 2 and len(entry.meta["files"]) == 2
    assert rows_of(one.train) == rows_of(two.train) and rows_of(one.eval) == rows_of(two.eval)
    assert one.report.problems == two.report.problems
    assert [p["line"] for p in one.report.problems if p["status"] == "skipped"] == [18]
    assert one.warnings == two.warnings


def test_examples_read_like_a_list(tmp_path, tiny_tokenizer, private_cache):
    prepared = prepare_data(DataConfig(path=jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(12)]),
                                       validation_split=0), tiny_tokenizer)
    ex = prepared.train
    assert isinstance(ex, Examples) and len(ex) == 12 and bool(ex)
    as_list = list(ex)
    assert ex == as_list and ex[3] == as_list[3] and ex[-1] == as_list[-1] and ex[2:5] == as_list[2:5]
    assert ex.__getitems__([5, 1]) == [as_list[5], as_list[1]]
    assert ex.lengths.tolist() == [len(e["input_ids"]) for e in as_list] == prepared.stats["lengths"]
    assert str(ex.where(4)) == "line 5" and ex.where(4).file == str(tmp_path / "d.jsonl")
    assert Examples.empty() == [] and not Examples.empty()
    with pytest.raises(IndexError):
        ex[12]


# ---- mixing ---------------------------------------------------------------------------------------

def test_sources_mixed_by_weight_as_interleave_datasets_does(tmp_path, tiny_tokenizer, private_cache):
    import datasets

    a = jsonl(tmp_path / "a.jsonl", [{"prompt": f"A{i}?", "completion": f"a{i}"} for i in range(30)])
    b = tmp_path / "b.csv"
    b.write_text("question,answer\n" + "".join(f"B{i}?,b{i}\n" for i in range(60)))
    cfg = DataConfig(sources=[{"path": a, "weight": 1}, {"path": str(b), "weight": 3}], validation_split=0)
    prepared = prepare_data(cfg, tiny_tokenizer, seed=7)
    decoded = [tiny_tokenizer.decode(e["input_ids"]) for e in prepared.train]
    order = ["a" if "<|im_start|>user\nA" in d else "b" for d in decoded]
    expect = datasets.interleave_datasets(
        [datasets.Dataset.from_dict({"s": ["a"] * 30}), datasets.Dataset.from_dict({"s": ["b"] * 60})],
        probabilities=[0.25, 0.75], seed=7, stopping_strategy="first_exhausted")["s"]
    assert order == list(expect)
    srcs = prepared.report.sources
    assert [(s["source"], s["weight"], s["records"], s["used_in_mix"]) for s in srcs] == [
        (a, 1.0, 30, order.count("a")), (str(b), 3.0, 60, order.count("b"))]
    assert prepared.format == "prompt_completion"
    more = prepare_data(DataConfig(sources=cfg.sources, validation_split=0, mix_stopping="all_exhausted"),
                        tiny_tokenizer, seed=7)
    assert len(more.train) > len(prepared.train)
    with pytest.raises(DataError) as e:
        prepare_data(DataConfig(sources=[{"path": a, "weight": 0}]), tiny_tokenizer)
    assert e.value.field == "data.sources[0].weight"


# ---- preview and statistics ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A 200,000-row alpaca file (about 20 MB)."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(200_000):
            fh.write(json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"Number {i}."}) + "\n")
    return path


def test_preview_reads_only_the_beginning_of_a_big_file(big_file, tiny_tokenizer):
    p = preview(DataConfig(path=str(big_file)), tiny_tokenizer, n=20)
    assert p.error == "" and p.format == "alpaca" and len(p.examples) == 20
    assert p.read_fraction < 0.01  # 200 of 200,000 records read for detection
    first = p.examples[0]
    assert first.where == "line 1" and first.length > 0 and first.trained_tokens > 0
    assert "".join(t for t, trained in first.segments if trained) == "Number 0.<|im_end|>"
    assert p.columns_used == ["instruction", "output", "input"] and p.columns_ignored == []


def test_preview_of_preference_data_says_what_it_is(tiny_tokenizer):
    p = preview(DataConfig(path=str(REPO / "tests/data/cases/preference-data-as-sft/dpo.json")), tiny_tokenizer)
    assert "preference data" in p.error and p.error_field == "data.columns"
    assert p.detected["shape"] == "sharegpt_chosen_rejected" and p.columns == ["conversations", "chosen", "rejected"]


def test_statistics_grow_as_the_file_is_read_and_stop_when_asked(tmp_path, tiny_tokenizer, private_cache):
    rows = [chat(i) for i in range(50)] + [{"messages": [{"role": "user", "content": "x"}]}]
    path = jsonl(tmp_path / "d.jsonl", rows)
    cfg = DataConfig(path=path, max_length=30, validation_split=0, skip_bad_lines=True)
    snaps = list(iter_statistics(cfg, tiny_tokenizer, every=10))
    assert [s.records for s in snaps] == [10, 20, 30, 40, 50, 51] and snaps[-1].done
    assert all(a.examples <= b.examples for a, b in zip(snaps, snaps[1:]))
    last = snaps[-1]
    report = prepare_data(cfg, tiny_tokenizer).report
    assert last.skipped == report.counts["skipped"] == 1
    assert last.truncated == report.counts["truncated"] and last.dropped == report.counts["dropped_untrained"]
    assert last.examples == report.counts["train_examples"] and sum(last.lengths["counts"]) == 50
    assert [p["line"] for p in last.problems if p["status"] == "skipped"] == [51]
    stop = threading.Event()
    seen = []
    for s in iter_statistics(cfg, tiny_tokenizer, every=10, cancel=stop):
        seen.append(s)
        stop.set()
    assert len(seen) == 2 and seen[-1].cancelled and not seen[-1].done


# ---- the data verb --------------------------------------------------------------------------------

def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_data_verb_prints_the_report_and_preference_data_as_json(tmp_path, tiny_model_dir):
    data = jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(8)] + [chat(0)])
    (tmp_path / "run.yaml").write_text(f"model: {{name_or_path: {tiny_model_dir}}}\n"
                                       "data: {path: d.jsonl, validation_split: 0}\n")
    out = run_cli("data", "run.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for needle in (f"Source {data}: JSON Lines, 9 records → 9 examples", "columns used: messages",
                   "Exact duplicates: 1", "Token lengths (before truncation)", "carry loss"):
        assert needle in out.stdout
    (tmp_path / "pref.yaml").write_text(
        f"model: {{name_or_path: {tiny_model_dir}}}\n"
        f"data: {{path: {REPO / 'tests/data/cases/preference-data-as-sft/dpo.json'}}}\n")
    out = run_cli("data", "pref.yaml", "--json", cwd=tmp_path)
    assert out.returncode == 2
    err = json.loads(out.stdout)
    assert err["field"] == "data.columns" and err["detected"]["shape"] == "sharegpt_chosen_rejected"
    out = run_cli("data", "pref.yaml", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "preference data" in out.stderr
    assert "Traceback" not in out.stderr


# ---- every file type through the Arrow pipeline ---------------------------------------------------

@pytest.mark.parametrize("kind", ["json", "json_columns", "csv", "parquet", "arrow_file", "arrow_stream", "saved"])
def test_every_file_type_prepares_what_json_lines_prepares(tmp_path, tiny_tokenizer, kind):
    from tests.engine.test_data_readers import RAW, write_records

    for fmt in ("messages", "sharegpt", "alpaca", "prompt_completion"):
        want = prepare_data(DataConfig(path=write_records(RAW[fmt], "jsonl", tmp_path / fmt / "jsonl"),
                                       validation_split=0), tiny_tokenizer)
        got = prepare_data(DataConfig(path=write_records(RAW[fmt], kind, tmp_path / fmt / kind),
                                      validation_split=0), tiny_tokenizer)
        assert rows_of(got.train) == rows_of(want.train), (fmt, kind)
        assert got.format == fmt


def test_bad_records_found_while_reading_are_listed_in_order(tmp_path, tiny_tokenizer):
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion\nQ1,A1\nQ2,A2,extra\nQ3,A3\n\"multi\nline\",A4\nQ5\n")
    prepared = prepare_data(DataConfig(path=str(p), validation_split=0, skip_bad_lines=True), tiny_tokenizer)
    assert [(e["record"], e["status"]) for e in prepared.report.problems] == [(2, "skipped"), (5, "skipped")]
    assert "more values than the 2 columns" in prepared.report.problems[0]["reason"]
    assert len(prepared.train) == 3
    with pytest.raises(DataError) as e:
        prepare_data(DataConfig(path=str(p), validation_split=0), tiny_tokenizer)
    assert e.value.record == 2 and "1 more bad record: record 5" in str(e.value)


def test_statistics_keep_unreadable_records_after_truncations_fill_the_list(tmp_path, tiny_tokenizer):
    """A file of long texts: the truncated records fill ``problems`` (keep_problems), yet a bad
    line far on is still listed — it is the one that stops a run without skip_bad_lines."""
    import json

    from engine.config import DataConfig
    from engine.data import iter_statistics

    rows = [json.dumps({"prompt": "word " * 40, "completion": "ok"}) for _ in range(60)]
    rows[50] = '{"prompt": "cut off'
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = DataConfig(path=str(path), max_length=16)
    last = list(iter_statistics(cfg, tiny_tokenizer, every=10, keep_problems=5))[-1]
    assert last.skipped == 1 and last.truncated + last.dropped == 59
    assert [p["line"] for p in last.problems if p["status"] == "skipped"] == [51]
    assert len([p for p in last.problems if p["status"] != "skipped"]) == 5
