"""Batches: padding-free packing (several examples in one row) or dynamic padding.

Packing without attention across examples relies on transformers' packed-sequence detection
(``masking_utils.find_packed_sequence_indices``): when a batch has ``position_ids`` that restart
at 0 for each example and NO ``attention_mask``, ``create_causal_mask`` builds a block-diagonal
causal mask for sdpa and eager (flash-attention gets the same boundaries from the position ids).

Measured with transformers 5.23 on a Llama model (tests/engine/test_data_collate.py): the
detection only runs when the model is called without a KV cache. ``LlamaModel.forward`` creates a
``DynamicCache`` whenever ``use_cache`` is true, and ``config.use_cache`` defaults to true, so a
plain ``model(**batch)`` silently attends across the packed examples. transformers' Trainer sets
``config.use_cache = TrainingArguments.use_cache`` (False by default) and gradient checkpointing
forces it off, so training is safe; a hand-written loop or evaluation must pass
``use_cache=False`` (see ``PACKED_FORWARD_KWARGS``), or ask this collator for an explicit 4-D mask
with ``mask_dtype=`` (costs tokens² memory per batch, but works whatever the cache setting).
"""

from __future__ import annotations

import bisect

# Keyword arguments a model call needs besides a packed batch (see the module docstring).
PACKED_FORWARD_KWARGS = {"use_cache": False}


def pack_examples(examples: list[dict], max_length: int) -> list[list[dict]]:
    """Group examples into bins of at most ``max_length`` tokens (best-fit decreasing).

    Best-fit decreasing fills bins far better than first-come order for mixed lengths; the
    trainer shuffles the bins, so the length ordering does not leak into the data order. An
    example longer than max_length (prepare_data never makes one) gets a bin of its own.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted: bisect finds the best fit
    for i in order:
        n = len(examples[i]["input_ids"])
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (room - n, b))
        else:
            bins.append([i])
            if max_length - n > 0:
                bisect.insort(free, (max_length - n, len(bins) - 1))
    return [[examples[i] for i in sorted(b)] for b in bins]


def make_collator(tokenizer, packing: bool, max_length: int, mask_dtype=None, pad_to_multiple_of: int | None = None):
    """A collator: a list of features → a batch dict of torch tensors.

    A feature is an example ``{"input_ids": [...], "labels": [...]}`` or, when packing, also a bin
    (a list of examples, from pack_examples). ``packing=True`` flattens the whole batch into one
    row with ``position_ids`` restarting at 0 per example and the first label of each example set
    to -100 (so no example learns to predict the next one's first token), and no attention_mask.
    ``mask_dtype`` (e.g. torch.float32, the model's dtype) adds a 4-D additive block-diagonal causal
    mask. ``packing=False`` pads to the longest example (labels with -100) with an attention_mask.
    """
    if packing:
        return _PackedCollator(max_length, mask_dtype)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:  # padded positions are masked out and never trained; any id will do
        pad_id = getattr(tokenizer, "eos_token_id", None) or 0
    return _PaddedCollator(pad_id, max_length, pad_to_multiple_of)


def _examples(features) -> list[dict]:
    out = []
    for f in features:
        out.extend(f if isinstance(f, (list, tuple)) else [f])
    return out


def _as_list(x) -> list[int]:
    return x.tolist() if hasattr(x, "tolist") else list(x)


class _PackedCollator:
    def __init__(self, max_length: int, mask_dtype=None):
        from transformers import DataCollatorWithFlattening

        self.max_length = max_length
        self.mask_dtype = mask_dtype
        # transformers' flattening collator does exactly the padding-free layout we want
        # (position_ids restarting per example, separator label -100); we add bins and the 4-D mask.
        self._flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)

    def __call__(self, features):
        examples = [{"input_ids": _as_list(e["input_ids"])[: self.max_length],
                     "labels": _as_list(e.get("labels", e["input_ids"]))[: self.max_length]}
                    for e in _examples(features)]
        batch = dict(self._flatten(examples, return_tensors="pt"))
        if self.mask_dtype is not None:
            batch["attention_mask"] = block_causal_mask(batch["position_ids"], self.mask_dtype)
        return batch


def block_causal_mask(position_ids, dtype):
    """A (1, 1, T, T) additive mask: 0 where a token may attend (same example, not in the
    future), the dtype's minimum elsewhere. sdpa and eager both accept it as given."""
    import torch

    pos = position_ids[0]
    # A new example starts wherever the position does not continue (as transformers detects it).
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[1:] = pos[1:] != pos[:-1] + 1
    seq = torch.cumsum(starts.long(), 0)
    n = pos.shape[0]
    allowed = (seq[:, None] == seq[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    mask = torch.zeros(n, n, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


class _PaddedCollator:
    def __init__(self, pad_id: int, max_length: int, multiple: int | None):
        self.pad_id, self.max_length, self.multiple = pad_id, max_length, multiple

    # Written by hand rather than DataCollatorForSeq2Seq: that needs a pad token and goes through
    # tokenizer.pad, which warns on every batch for fast tokenizers; this is a few lines.
    def __call__(self, features):
        import torch

        examples = _examples(features)
        ids = [_as_list(e["input_ids"])[: self.max_length] for e in examples]
        labels = [_as_list(e.get("labels", e["input_ids"]))[: self.max_length] for e in examples]
        width = max(len(x) for x in ids)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        batch_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        batch_labels = torch.full((len(ids), width), -100, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, (x, y) in enumerate(zip(ids, labels)):
            batch_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            batch_labels[i, : len(y)] = torch.tensor(y, dtype=torch.long)
            mask[i, : len(x)] = 1
        return {"input_ids": batch_ids, "labels": batch_labels, "attention_mask": mask}
