"""The time estimate: the run's workload from real token lengths, and the probe that times the
run's own micro-batches through the training build (attention, loss) — never synthetic
full-length batches when there is data. No test asserts a time; they check what is timed and
the arithmetic that turns it into the run's figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine import wire
from engine.config import RunConfig
from engine.estimate.workload import plan_workload

REPO = Path(__file__).resolve().parents[2]


def _cfg(**train) -> RunConfig:
    cfg = RunConfig()
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def write_varied_data(path: Path, n: int = 45) -> Path:
    """Chat examples from a few tokens to a few dozen: a long tail, so padding matters."""
    rows = []
    for i in range(n):
        words = " ".join(["arr"] * (1 + (i * 7) % 23 + (30 if i % 9 == 0 else 0)))
        rows.append({"messages": [{"role": "user", "content": f"Say it {i}"},
                                  {"role": "assistant", "content": words}]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def tiny_run(model_dir, tmp_path, **train) -> RunConfig:
    """test_train's tiny run on the long-tailed data."""
    from tests.engine.test_train import tiny_config

    cfg = tiny_config(model_dir, tmp_path, **train)
    cfg.data.path = str(write_varied_data(tmp_path / "varied.jsonl"))
    cfg.data.max_length = 96
    return cfg


# ---- the workload ------------------------------------------------------------------------------

LENGTHS = [10, 200, 12, 15, 900, 30, 11, 40, 13, 17, 600, 25, 19, 14]


def test_a_packed_epoch_is_exactly_its_tokens_and_the_trainers_step_count():
    w = plan_workload(LENGTHS, [n // 2 for n in LENGTHS], _cfg(batch_size=4, grad_accum=3, epochs=2), packed=True)
    micro = math.ceil(len(LENGTHS) / 4)                        # 4 micro-batches an epoch
    assert w.steps_per_epoch == micro // 3 + 1 == 2            # a short last accumulation group is a step
    assert w.steps == 4 and w.micro_batches == pytest.approx(2 * micro)
    assert w.tokens == w.real_tokens == 2 * sum(LENGTHS) and w.padding_fraction == 0
    assert w.trained_tokens == sum(n // 2 for n in LENGTHS) * 2
    assert sorted(i for mb in w.micro for i in mb) == list(range(len(LENGTHS)))


def test_padding_costs_the_batch_width_and_length_grouping_cuts_it():
    cfg = _cfg(batch_size=4, group_by_length=False)
    w = plan_workload(LENGTHS, LENGTHS, cfg, packed=False)
    by_hand = sum(len(mb) * max(LENGTHS[i] for i in mb) for mb in w.micro)
    assert w.tokens == by_hand and w.real_tokens == sum(LENGTHS) and w.padding_fraction > 0.3
    # transformers groups within mega-batches of up to 50 batches (fewer for a small set), so the
    # saving shows on a set of some size.
    many = [LENGTHS[(i * 5) % len(LENGTHS)] + i % 3 for i in range(800)]
    random_order = plan_workload(many, many, _cfg(batch_size=4, group_by_length=False), packed=False)
    grouped = plan_workload(many, many, _cfg(batch_size=4, group_by_length=True), packed=False)
    assert grouped.tokens < 0.6 * random_order.tokens and grouped.real_tokens == random_order.real_tokens


def test_virtual_tokens_are_computed_but_not_counted_as_data():
    w = plan_workload([10, 10], [5, 5], _cfg(batch_size=2), packed=False, virtual_tokens=20)
    assert w.tokens == 2 * 30 and w.real_tokens == 20


def test_max_steps_and_a_sample_scale_the_run():
    w = plan_workload(LENGTHS, LENGTHS, _cfg(batch_size=2, max_steps=70), packed=True)
    assert w.steps == 70 and w.micro_batches == pytest.approx(70)
    assert w.tokens == pytest.approx(70 * sum(LENGTHS) / 7, rel=1e-6)
    # The same lengths standing for 10× as many examples: ten times the epoch.
    big = plan_workload(LENGTHS, LENGTHS, _cfg(batch_size=2, epochs=1), packed=True, examples=140)
    assert big.steps == 70 and big.tokens == pytest.approx(10 * sum(LENGTHS), rel=1e-6)


def test_the_workload_matches_what_the_trainer_counts_step_by_step(tiny_model_dir, tmp_path):
    """A real two-epoch run with accumulation and a short last group: its step count, each step's
    non-padding tokens and the total are what the plan says, exactly — the plan draws the
    trainer's own batches (accelerate's seedable sampler, data_seed + epoch)."""
    from engine.data import prepare_data
    from engine.estimate.workload import epoch_order
    from engine.events import ListSink
    from engine.models import load_tokenizer
    from engine.training import train

    cfg = tiny_run(tiny_model_dir, tmp_path, max_steps=-1, epochs=2, grad_accum=3)
    data = prepare_data(cfg.data, load_tokenizer(str(tiny_model_dir)), seed=cfg.train.seed)
    lengths = [len(e["input_ids"]) for e in data.train]
    w = plan_workload(lengths, [1] * len(lengths), cfg, packed=True)
    assert w.exact
    planned = []
    for epoch in range(2):
        order = epoch_order(lengths, 4, 3, grouped=False, seed=cfg.train.seed, epoch=epoch)
        micro = [sum(lengths[j] for j in order[i:i + 4]) for i in range(0, len(order), 4)]
        planned += [sum(micro[i:i + 3]) for i in range(0, len(micro), 3)]
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    steps = sink.of("step")
    counted = [s["tokens"] for s in steps]
    per_step = [b - a for a, b in zip([0] + counted, counted)]
    assert sink.of("started")[0]["total_steps"] == w.steps == steps[-1]["step"] == len(planned)
    assert per_step == planned
    assert counted[-1] == w.real_tokens == w.tokens == sum(planned)


def test_a_short_run_is_planned_from_its_own_first_steps():
    """10 steps of a big epoch: the tokens of those 10 micro-batches, not an epoch's average."""
    lengths = [16 + (i * 37) % 900 for i in range(400)]
    w = plan_workload(lengths, lengths, _cfg(batch_size=4, max_steps=10), packed=True)
    from engine.estimate.workload import epoch_order

    order = epoch_order(lengths, 4, 1, grouped=False, seed=42)
    assert w.tokens == sum(lengths[j] for j in order[:40]) and w.micro_batches == 10


def test_a_short_length_grouped_run_is_heavier_than_its_epoch():
    """The grouped sampler puts each mega-batch's longest examples first, so the first steps of
    a run are far longer than average; its order cannot be reproduced, so draws are averaged."""
    lengths = [16 + (i * 37) % 900 for i in range(800)]
    cfg = _cfg(batch_size=4, max_steps=10, group_by_length=True)
    short = plan_workload(lengths, lengths, cfg, packed=False)
    epoch = plan_workload(lengths, lengths, _cfg(batch_size=4, group_by_length=True), packed=False)
    assert not short.exact and short.real_tokens / 10 > 1.5 * epoch.real_tokens / epoch.steps
    assert short.largest >= max(short.micro_tokens[:1])


def test_the_largest_micro_batch_is_the_runs_own():
    w = plan_workload(LENGTHS, LENGTHS, _cfg(batch_size=4), packed=True)
    assert w.largest == max(w.micro_tokens)
    two = plan_workload(LENGTHS, LENGTHS, _cfg(batch_size=4, max_steps=1), packed=True)
    assert two.largest == w.micro_tokens[0] == two.tokens


def test_attention_work_grows_with_the_square_of_an_examples_length():
    from engine.estimate.workload import FULL_ROW, PER_EXAMPLE, _micro_figures

    lengths = [1000, 500, 500]
    long_one = _micro_figures([0], lengths, True, 0, PER_EXAMPLE, 1e-3)[1]
    two_halves = _micro_figures([1, 2], lengths, True, 0, PER_EXAMPLE, 1e-3)[1]
    assert long_one > two_halves > 1000                # same tokens, half the pairs
    # A block-diagonal mask over the packed row computes every pair of the row.
    assert _micro_figures([1, 2], lengths, True, 0, FULL_ROW, 1e-3)[1] > long_one


def test_alpha_from_a_real_config():
    from transformers import AutoConfig

    from engine.estimate.workload import attention_alpha

    cfg = AutoConfig.from_pretrained(REPO / "tests" / "data" / "configs" / "llama-3-8b")
    a = attention_alpha(cfg, 8_030_261_248)
    # 4 × 32 layers × 4096 / (2 × 8.03e9); a causal 4k-token example (2k pairs a token) adds about
    # 7% to its matmul FLOPs — the usual 12·L·d·layers vs 6N rule, halved for causality.
    assert a == pytest.approx(4 * 32 * 4096 / (2 * 8_030_261_248))
    assert 0.06 < a * 4096 / 2 < 0.075


# ---- the probe ---------------------------------------------------------------------------------

def test_probe_times_the_runs_own_batches_through_the_training_loss(tiny_model_dir, tmp_path, monkeypatch):
    from engine.estimate.timing import probe_time
    from engine.training import loss as loss_mod

    calls = []
    real_call = loss_mod.LinearCrossEntropyLoss.__call__

    def spy(self, model, inputs, num_items_in_batch=None):
        calls.append(int(inputs["input_ids"].numel()))
        return real_call(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(loss_mod.LinearCrossEntropyLoss, "__call__", spy)
    cfg = tiny_run(tiny_model_dir, tmp_path, max_steps=-1, epochs=2, eval_steps=5)
    progress = []
    t = probe_time(cfg, steps=3, progress=progress.append)
    assert t["from_data"] and t["weights"] == "real" and t["packed"]
    assert t["attention"] == "sdpa_varlen" and "chunked" in t["loss"]
    # Warm-up plus three timed micro-batches, each one of the run's own (packed: no padding).
    timed = [x["tokens"] for x in t["timed"]]
    assert calls[1:] == timed and len(calls) == 4
    assert max(timed) < cfg.train.batch_size * cfg.data.max_length    # not synthetic full-length rows
    assert t["total_steps"] == 2 * math.ceil(t["examples"] / 4) and t["examples"] == t["measured_examples"]
    rate = sum(timed) / sum(x["seconds"] for x in t["timed"])
    work_rate = sum(x["work"] for x in t["timed"]) / sum(x["seconds"] for x in t["timed"])
    assert all(x["work"] > x["tokens"] for x in t["timed"]) and t["attention_alpha"] > 0
    assert rate > 0 and t["exact_order"] and t["work"] > t["tokens"]
    # The run's work at the measured rate, plus an optimizer step per step.
    assert t["train_s"] == pytest.approx(t["work"] / work_rate + t["total_steps"] * t["optimizer_step_s"])
    assert t["step_s"] == pytest.approx(t["train_s"] / t["total_steps"])
    assert t["evaluations"] == t["total_steps"] // 5 + 1 and t["eval_s"] > 0
    assert t["eta_s"] == pytest.approx(t["train_s"] + t["eval_s"])
    assert t["total_s"] == pytest.approx(t["eta_s"] + t["startup_s"])
    assert any("Timing step 3 of 3" in p for p in progress)


def test_probe_without_data_assumes_full_length_steps_and_says_so(tiny_model_dir, tmp_path):
    from engine.estimate.timing import probe_time

    cfg = tiny_run(tiny_model_dir, tmp_path, max_steps=6, batch_size=2)
    cfg.data.path = str(tmp_path / "missing.jsonl")
    cfg.data.max_length = 32
    t = probe_time(cfg, steps=1)
    assert not t["from_data"] and t["total_steps"] == 6
    assert t["tokens"] == 6 * 2 * 32 and t["timed"][0]["tokens"] == 64


def test_probe_of_an_unpacked_prompt_method_pads_and_adds_virtual_tokens(tiny_model_dir, tmp_path):
    from engine.estimate.timing import probe_time

    cfg = tiny_run(tiny_model_dir, tmp_path, max_steps=4)
    cfg.method.name = "prompt_tuning"
    cfg.method.num_virtual_tokens = 8
    t = probe_time(cfg, steps=1)
    assert not t["packed"] and t["padding_fraction"] > 0
    assert t["timed"][0]["tokens"] % cfg.train.batch_size == 0          # batch × (width + virtual)


def test_cli_time_only_prints_json_and_progress(tiny_model_dir, tmp_path):
    cfg = tiny_run(tiny_model_dir, tmp_path, max_steps=3)
    run_yaml = tmp_path / "run.yaml"
    cfg.save(run_yaml)
    out = subprocess.run([sys.executable, "-m", "engine", "estimate", str(run_yaml), "--time-only", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert set(d) == {"time"} and d["time"]["total_steps"] == 3 and d["time"]["startup_s"] > 0
    # progress arrives as wire messages (engine/wire.py), one a line
    statuses = [m["status"] for m in map(wire.decode, out.stderr.splitlines()) if m and m["type"] == "progress"]
    assert any(s.startswith("Timing step 1 of 3") for s in statuses)
    human = subprocess.run([sys.executable, "-m", "engine", "estimate", str(run_yaml), "--time"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert human.returncode == 0, human.stderr
    assert "Peak allocated" in human.stdout and "the run: 3 steps" in human.stdout
