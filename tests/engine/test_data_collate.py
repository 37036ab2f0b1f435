"""Padding-free packing: no attention across examples, so per-example losses and gradients equal
the unpacked ones (fp32, tiny Llama, sdpa and eager); dynamic padding; greedy bins."""

from __future__ import annotations

import pytest

from engine.config import DataConfig
from engine.data import (
    IGNORE_INDEX,
    PACKED_FORWARD_KWARGS,
    make_collator,
    pack_examples,
    prepare_data,
)
from engine.data.demo import DEMO_TRAIN


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    cfg = DataConfig(path=str(DEMO_TRAIN), validation_split=0, max_examples=4, max_length=128)
    exs = prepare_data(cfg, tiny_tokenizer).train
    assert len({len(e["input_ids"]) for e in exs}) > 1  # different lengths, so boundaries matter
    return exs


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=request.param,
                                             dtype=torch.float32)
    m.train()  # dropout is 0 in the tiny config; train mode is what the trainer runs
    return m


def token_losses(logits, labels):
    import torch.nn.functional as F

    # The model's own loss shifts labels left by one: position j predicts token j + 1.
    return F.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="none")


def per_example(losses, labels, lengths):
    out, start = [], 0
    for n in lengths:
        seg, lab = losses[start:start + n - 1], labels[0, start + 1:start + n]
        out.append((seg.sum() / (lab != IGNORE_INDEX).sum()).item())
        start += n
    return out


def unpacked(model, exs):
    import torch

    losses, total = [], 0.0
    for e in exs:
        ids, lab = torch.tensor([e["input_ids"]]), torch.tensor([e["labels"]])
        tl = token_losses(model(input_ids=ids).logits, lab)
        losses.append((tl.sum() / (lab[0, 1:] != IGNORE_INDEX).sum()).item())
        total = total + tl.sum()
    return losses, total


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def check_packed_equals_unpacked(model, exs, batch, **forward_kwargs):
    import torch

    ref_losses, ref_total = unpacked(model, exs)
    ref_grads = grads(model, ref_total)
    tl = token_losses(model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                            attention_mask=batch.get("attention_mask"), **forward_kwargs).logits, batch["labels"])
    losses = per_example(tl, batch["labels"], [len(e["input_ids"]) for e in exs])
    assert losses == pytest.approx(ref_losses, abs=1e-4)
    got = grads(model, tl.sum())
    assert got.keys() == ref_grads.keys()
    for name in got:
        torch.testing.assert_close(got[name], ref_grads[name], atol=1e-4, rtol=1e-4, msg=name)


def test_packed_batch_layout(tiny_tokenizer, examples):
    batch = make_collator(tiny_tokenizer, packing=True, max_length=128)(examples)
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no attention_mask: see collate.py
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (1, sum(lengths))
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    pos = batch["position_ids"][0].tolist()
    assert [pos[s] for s in starts] == [0] * len(starts) and pos[-1] == lengths[-1] - 1
    labels = batch["labels"][0].tolist()
    assert all(labels[s] == IGNORE_INDEX for s in starts)
    flat = [t for e in examples for t in e["labels"][1:]]
    assert [lab for i, lab in enumerate(labels) if i not in starts] == flat


def test_packed_loss_and_grads_equal_unpacked(tiny_tokenizer, examples, model):
    batch = make_collator(tiny_tokenizer, packing=True, max_length=128)(examples)
    # transformers only finds the example boundaries from position_ids when no KV cache is made.
    check_packed_equals_unpacked(model, examples, batch, **PACKED_FORWARD_KWARGS)


def test_packed_bins_with_explicit_4d_mask_work_even_with_a_cache(tiny_tokenizer, examples, model):
    import torch

    assert model.config.use_cache  # the default that silently disables packed-sequence detection
    bins = [examples[:2], examples[2:]]
    batch = make_collator(tiny_tokenizer, packing=True, max_length=128, mask_dtype=torch.float32)(bins)
    assert batch["attention_mask"].shape == (1, 1, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    check_packed_equals_unpacked(model, examples, batch)


def test_padded_batch_matches_unpacked(tiny_model_no_template, examples):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_no_template)  # no pad token: EOS pads
    batch = make_collator(tok, packing=False, max_length=128)(examples)
    width = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (4, width)
    short = min(range(4), key=lambda i: len(examples[i]["input_ids"]))
    n = len(examples[short]["input_ids"])
    assert batch["input_ids"][short, n:].eq(tok.eos_token_id).all()
    assert batch["labels"][short, n:].eq(IGNORE_INDEX).all() and batch["attention_mask"][short, n:].eq(0).all()

    model = AutoModelForCausalLM.from_pretrained(tiny_model_no_template, dtype=torch.float32)
    ref, _ = unpacked(model, examples)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    got = []
    for i in range(len(examples)):
        tl = token_losses(logits[i:i + 1], batch["labels"][i:i + 1])
        got.append((tl.sum() / (batch["labels"][i, 1:] != IGNORE_INDEX).sum()).item())
    assert got == pytest.approx(ref, abs=1e-4)


def test_trainer_turns_the_cache_off(tiny_model_dir, tmp_path):
    # The packing contract rests on this: transformers' Trainer sets config.use_cache from
    # TrainingArguments.use_cache, which is False unless asked for.
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.use_cache
    Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    assert model.config.use_cache is False


def test_pack_examples_best_fit():
    exs = [{"input_ids": [0] * n, "labels": [0] * n} for n in (5, 3, 8, 2, 7, 1, 4)]
    bins = pack_examples(exs, 10)
    assert sorted(id(e) for b in bins for e in b) == sorted(id(e) for e in exs)
    assert all(sum(len(e["input_ids"]) for e in b) <= 10 for b in bins)
    assert len(bins) == 3  # 30 tokens in 3 full bins of 10
    big = pack_examples([{"input_ids": [0] * 12, "labels": [0] * 12}, *exs[:2]], 10)
    assert [len(b) for b in big] == [1, 2]


def test_collators_cut_to_max_length(tiny_tokenizer):
    ex = {"input_ids": list(range(20)), "labels": list(range(20))}
    assert make_collator(tiny_tokenizer, True, 8)([ex])["input_ids"].shape == (1, 8)
    assert make_collator(tiny_tokenizer, False, 8)([ex, ex])["input_ids"].shape == (2, 8)
