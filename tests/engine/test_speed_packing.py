"""Packed vs unpacked on the tiny model with a LoRA adapter (fp32): per-example losses and the
adapter's gradients agree within 1e-4, for every attention implementation the engine can pick
(sdpa_varlen included) and for the chunked loss against the model's own loss."""

from __future__ import annotations

import pytest

from engine.config import DataConfig
from engine.data import IGNORE_INDEX, make_collator, prepare_data
from engine.data.demo import DEMO_TRAIN

TOL = 1e-4


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    cfg = DataConfig(path=str(DEMO_TRAIN), validation_split=0, max_examples=4, max_length=128)
    exs = prepare_data(cfg, tiny_tokenizer).train
    assert len({len(e["input_ids"]) for e in exs}) > 1  # different lengths, so boundaries matter
    return exs


def lora_model(model_dir, attn: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.models.attention import register_attention

    register_attention()
    m = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32)
    m.config.use_cache = False
    torch.manual_seed(0)  # LoRA A is drawn at random: the same adapter for every attention kind
    m = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    g = torch.Generator().manual_seed(0)
    for name, p in m.named_parameters():  # B = 0 at init would make A's gradients vanish
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g) * 0.05
    m.train()
    return m


def lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def mean_loss(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE_INDEX)


def packed_example_losses(model, batch, lengths):
    """Per-example mean token loss, each computed from its slice of one packed forward."""
    import torch.nn.functional as F

    logits = model(**batch).logits
    labels = batch["labels"]
    out, start = [], 0
    for n in lengths:
        lg, lab = logits[0, start:start + n - 1], labels[0, start + 1:start + n]
        out.append(F.cross_entropy(lg, lab, ignore_index=IGNORE_INDEX))
        start += n
    return out


def grads(model, loss):
    import torch

    ps = lora_params(model)
    return dict(zip([n for n, _ in ps], torch.autograd.grad(loss, [p for _, p in ps], retain_graph=True)))


def close(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("attn", ["sdpa_varlen", "sdpa", "eager"])
def test_per_example_loss_and_adapter_gradients_packed_vs_unpacked(tiny_model_dir, tiny_tokenizer, examples,
                                                                     attn):
    import torch

    model = lora_model(tiny_model_dir, attn)
    batch = make_collator(tiny_tokenizer, packing=True, max_length=128)(examples)
    assert "attention_mask" not in batch
    lengths = [len(e["input_ids"]) for e in examples]
    packed = packed_example_losses(model, batch, lengths)
    for e, lp in zip(examples, packed):
        ids, lab = torch.tensor([e["input_ids"]]), torch.tensor([e["labels"]])
        alone = mean_loss(model(input_ids=ids).logits, lab)
        assert abs(lp.item() - alone.item()) <= TOL, (attn, lp.item(), alone.item())
        # No attention across examples: each example's gradient is its own.
        assert close(grads(model, lp), grads(model, alone)) <= TOL


@pytest.mark.parametrize("attn", ["sdpa_varlen", "sdpa"])
def test_chunked_loss_on_packed_equals_standard_loss_on_padded(tiny_model_dir, tiny_tokenizer, examples, attn):
    from engine.training.loss import make_loss

    model = lora_model(tiny_model_dir, attn)
    fast, note = make_loss(model, "chunked", 5, "cpu")  # a chunk of 5 tokens: many chunks
    assert fast is not None, note
    padded = make_collator(tiny_tokenizer, packing=False, max_length=128)(examples)
    packed = make_collator(tiny_tokenizer, packing=True, max_length=128)(examples)
    ref = model(**padded).loss
    got = fast(model, packed)
    assert abs(got.item() - ref.item()) <= TOL
    assert close(grads(model, got), grads(model, ref)) <= TOL
    # With the Trainer's token count (gradient accumulation), the loss is the sum over it.
    n = int((padded["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert abs(fast(model, packed, num_items_in_batch=2 * n).item() - ref.item() / 2) <= TOL
    # The LM head is itself again afterwards: real logits, vocabulary wide.
    assert model(**packed).logits.shape[-1] == len(tiny_tokenizer)


def test_segment_bounds_follow_position_restarts():
    import torch

    from engine.models.attention import segment_bounds

    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1, 2, 3]])
    assert segment_bounds(pos) == [[(0, 3), (3, 5), (5, 6), (6, 10)]]


def test_varlen_attention_with_padding_and_generation_matches_sdpa(tiny_model_dir, tiny_tokenizer, examples):
    """Padded batches and KV-cache decoding take the plain-SDPA path with the right mask."""
    import torch

    a, b = lora_model(tiny_model_dir, "sdpa_varlen"), lora_model(tiny_model_dir, "sdpa")
    padded = make_collator(tiny_tokenizer, packing=False, max_length=128)(examples)
    with torch.no_grad():
        la, lb = a(**padded).logits, b(**padded).logits
        mask = padded["attention_mask"].bool()
        assert (la[mask] - lb[mask]).abs().max().item() <= TOL
        ids = torch.tensor([examples[0]["input_ids"][:10]])
        ga = a.generate(input_ids=ids, max_new_tokens=5, do_sample=False, use_cache=True)
        gb = b.generate(input_ids=ids, max_new_tokens=5, do_sample=False, use_cache=True)
    assert ga.tolist() == gb.tolist()
