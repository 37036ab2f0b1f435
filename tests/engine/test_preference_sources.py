"""Preference data the way people have it: several sources of different shapes mixed by weight
(data.sources, the SFT path's mix), a KTO source refused in a paired mix, and a saved DatasetDict
whose validation split becomes the held-out pairs (and, as before, SFT's held-out examples)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import DataConfig, RunConfig
from engine.data.errors import DataError
from engine.data.preference import prepare_preference_data
from engine.events import ListSink
from engine.training import train


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _plain(tmp_path: Path, n: int = 12) -> str:
    """prompt/chosen/rejected text pairs: 'plain k' prompts."""
    return _jsonl(tmp_path / "plain.jsonl", [{"prompt": f"plain {k}: what is {k} plus 1?", "chosen": f"It is {k + 1}.",
                                              "rejected": "I cannot say."} for k in range(n)])


def _sharegpt(tmp_path: Path, n: int = 12) -> str:
    """ShareGPT conversations with chosen/rejected turn objects: 'share k' prompts."""
    return _jsonl(tmp_path / "share.jsonl", [
        {"conversations": [{"from": "system", "value": "Answer with a number."},
                           {"from": "human", "value": f"share {k}: what is {k} times 2?"}],
         "chosen": {"from": "gpt", "value": f"{2 * k}"}, "rejected": {"from": "gpt", "value": "No idea."}}
        for k in range(n)])


def _kto(tmp_path: Path, n: int = 6) -> str:
    return _jsonl(tmp_path / "labels.jsonl", [{"prompt": f"kto {k}?", "completion": f"{k}", "label": k % 2 == 0}
                                              for k in range(n)])


def _prompts(ds) -> list[str]:
    return [next(t["content"] for t in r["prompt"] if t["role"] == "user") for r in ds]


def test_two_shapes_mix_by_weight_into_trl_columns(tmp_path):
    data = DataConfig(sources=[{"path": _plain(tmp_path), "weight": 1}, {"path": _sharegpt(tmp_path), "weight": 1}],
                      validation_split=0.0, mix_stopping="all_exhausted")
    got = prepare_preference_data(data, "paired", seed=3)
    prompts = _prompts(got.train)
    # all_exhausted: every row of both sources is drawn at least once, in an interleaved order
    assert {p for p in prompts if p.startswith("plain")} == {f"plain {k}: what is {k} plus 1?" for k in range(12)}
    assert {p for p in prompts if p.startswith("share")} == {f"share {k}: what is {k} times 2?" for k in range(12)}
    assert prompts[:24] != sorted(prompts[:24], key=lambda p: not p.startswith("plain")), "interleaved, not stacked"
    assert set(got.train.column_names) == {"prompt", "chosen", "rejected"}
    share = next(r for r in got.train if _prompts([r])[0].startswith("share"))
    assert share["prompt"][0] == {"role": "system", "content": "Answer with a number."}
    assert share["rejected"] == [{"role": "assistant", "content": "No idea."}]
    # the order is the SFT path's: datasets.interleave_datasets with the weights' probabilities and the seed
    from engine.data.mix import interleave_order

    s, i = interleave_order([12, 12], [1.0, 1.0], 3, "all_exhausted")
    assert [p.split(" ")[0] for p in prompts] == ["plain" if k == 0 else "share" for k in s.tolist()]
    rep = got.report
    assert rep.shape == "mixed" and rep.pairs == len(got.train)
    assert [(src["shape"], src["records"], src["weight"]) for src in rep.sources] == [
        ("prompt_chosen_rejected", 12, 1.0), ("sharegpt_chosen_rejected", 12, 1.0)]
    text = "\n".join(rep.lines())
    assert "a mix of 2 sources" in text and "plain.jsonl" in text and "share.jsonl" in text
    assert "pairs for training" in text and "length balance" in text


def test_weights_and_stopping_follow_the_run_file(tmp_path):
    data = DataConfig(sources=[{"path": _plain(tmp_path, 30), "weight": 3}, {"path": _sharegpt(tmp_path, 30)}],
                      validation_split=0.2, mix_stopping="first_exhausted")
    got = prepare_preference_data(data, "paired", seed=0)
    train, held = _prompts(got.train), _prompts(got.eval)
    n_plain = sum(p.startswith("plain") for p in train + held)
    assert n_plain > 2 * (len(train) + len(held) - n_plain), "weight 3 draws the first source about 3× as often"
    assert got.report.eval == len(held) > 0 and "mixed rows held out" in got.report.validation
    assert not set(train) & set(held)


def test_a_kto_source_in_a_paired_mix_is_refused_naming_it(tmp_path):
    kto = _kto(tmp_path)
    data = DataConfig(sources=[_plain(tmp_path), {"path": kto, "weight": 2}])
    with pytest.raises(DataError) as e:
        prepare_preference_data(data, "paired")
    assert e.value.field == "data.sources[1].path" and e.value.file.endswith("labels.jsonl")
    assert "true/false label" in e.value.problem and "cannot be mixed" in e.value.problem
    assert "data.sources" in e.value.hint and "kto" in e.value.hint
    # The same mix serves KTO: the pairs are split into labelled answers before mixing.
    got = prepare_preference_data(data, "unpaired", seed=0)
    assert set(got.train.column_names) == {"prompt", "completion", "label"}
    prompts = _prompts(got.train)
    assert any(p.startswith("kto") for p in prompts) and any(p.startswith("plain") for p in prompts)
    assert got.report.task == "unpaired" and got.report.desirable + got.report.undesirable == got.report.pairs
    assert [src["records"] for src in got.report.sources] == [12, 6]   # records read, before the split


def test_a_missing_source_is_named_by_its_entry(tmp_path):
    data = DataConfig(sources=[_plain(tmp_path), str(tmp_path / "nope.jsonl")])
    with pytest.raises(DataError) as e:
        prepare_preference_data(data, "paired")
    assert e.value.field == "data.sources[1].path"


def _saved_dict(tmp_path: Path, split: str = "validation") -> str:
    import datasets

    folder = tmp_path / "saved"
    pairs = [{"prompt": f"train {k}?", "chosen": f"yes {k}", "rejected": "no"} for k in range(10)]
    held = [{"prompt": f"held {k}?", "chosen": f"yes {k}", "rejected": "no"} for k in range(3)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(pairs),
                          split: datasets.Dataset.from_list(held)}).save_to_disk(str(folder))
    return str(folder)


@pytest.mark.parametrize("split", ["validation", "test"])
def test_a_saved_datasetdicts_validation_split_is_the_held_out_pairs(tmp_path, split):
    folder = _saved_dict(tmp_path, split)
    logs = []

    class Log:
        log, warn = logs.append, logs.append

    got = prepare_preference_data(DataConfig(path=folder, validation_split=0.5), "paired", seed=0, reporter=Log())
    assert _prompts(got.train) == [f"train {k}?" for k in range(10)], "nothing held out of the training split"
    assert _prompts(got.eval) == ["held 0?", "held 1?", "held 2?"]
    assert got.report.eval == 3 and f"(split {split})" in got.report.validation
    assert any(f"split {split}" in line for line in got.report.lines())
    assert any(f"Validation: 3 from {folder} (split {split})" in m for m in logs)
    # data.validation_path still wins over the split
    other = _jsonl(tmp_path / "v.jsonl", [{"prompt": "file?", "chosen": "a", "rejected": "b"}])
    got = prepare_preference_data(DataConfig(path=folder, validation_path=other), "paired")
    assert _prompts(got.eval) == ["file?"]


def test_sft_uses_the_saved_validation_split_too(tmp_path, tiny_tokenizer):
    import datasets

    from engine.data import prepare_data

    folder = tmp_path / "sft"
    rows = [{"instruction": f"Say {k}.", "input": "", "output": f"{k}!"} for k in range(8)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "validation": datasets.Dataset.from_list(rows[:2])}).save_to_disk(str(folder))
    logs = []

    class Log:
        log, warn = logs.append, logs.append

    got = prepare_data(DataConfig(path=str(folder), validation_split=0.5), tiny_tokenizer, reporter=Log())
    assert len(got.train) == 8 and len(got.eval) == 2
    assert "(split validation)" in got.report.validation
    assert any("Validation: 2 examples from" in m and "(split validation)" in m for m in logs)


def test_a_mixed_preference_run_trains_on_both_sources(tiny_model_dir, tmp_path, monkeypatch):
    """DPO on the tiny model from a prompt/chosen/rejected file and a ShareGPT file mixed by
    weight: the prepared pairs the trainer receives hold rows of both, and it trains its steps."""
    from engine.training import run as run_mod

    seen = {}
    real = run_mod.prepare_preference_data

    def spy(*a, **kw):
        seen["data"] = real(*a, **kw)
        return seen["data"]

    monkeypatch.setattr(run_mod, "prepare_preference_data", spy)
    cfg = RunConfig.from_dict({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"sources": [{"path": _plain(tmp_path), "weight": 1}, {"path": _sharegpt(tmp_path), "weight": 2}],
                 "max_length": 64, "validation_split": 0.2},
        "method": {"name": "lora", "dropout": 0.0},
        "train": {"task": "dpo", "max_steps": 3, "batch_size": 2, "lr": 5e-3, "seed": 0, "logging_steps": 1},
        "output_dir": str(tmp_path / "run"),
    })
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    assert [s["step"] for s in sink.of("step")] == [1, 2, 3]
    prompts = _prompts(seen["data"].train)
    assert any(p.startswith("plain") for p in prompts) and any(p.startswith("share") for p in prompts)
    assert sink.of("started")[0]["train_examples"] == len(prompts)
    logs = " ".join(e["message"] for e in sink.of("log"))
    assert "a mix of 2 sources" in logs and "Mixed " in logs and "share.jsonl (weight 2)" in logs


def test_plain_text_pairs_do_not_mix_with_conversations(tmp_path):
    implicit = _jsonl(tmp_path / "implicit.jsonl", [{"chosen": f"Q{k} A: yes", "rejected": f"Q{k} A: no"}
                                                    for k in range(6)])
    with pytest.raises(DataError) as e:
        prepare_preference_data(DataConfig(sources=[_plain(tmp_path), implicit]), "paired")
    assert e.value.field == "data.sources" and "implicit.jsonl: plain text" in e.value.problem
