"""How much work a run is: its optimizer steps and the tokens the model processes, from the
token lengths of the prepared training data and the trainer's batching.

A step's cost follows the tokens in it, and those depend on the data: with packing a step is the
batch's examples end to end (no padding); without it every example is padded to the batch's
longest (less so with length grouping). Assuming every step holds ``batch × max_length`` tokens —
what a probe of synthetic full-length batches does — overstates a chat data set's time by the
ratio of max_length to the mean example, often 3–10×.

The run is walked micro-batch by micro-batch, so a 10-step run's tokens are those 10 steps', not
an epoch average. The batches are the trainer's own where that can be known: its random sampler
is accelerate's ``SeedableRandomSampler``, which draws epoch ``e`` as ``randperm(n)`` from a
generator seeded with ``data_seed + e`` (the run's seed). The length-grouped sampler draws from
the global RNG, so its batches are a draw of the same structure (sorted mega-batches, the longest
batch first). A run planned from a sample of a big data set is scaled from the sample's epoch.

A micro-batch's *work* is its tokens plus attention: ``tokens + alpha × pairs``, where ``pairs``
counts the query-key pairs the attention kernel computes (per example and causal for packed rows
with a varlen kernel; the whole padded width otherwise) and ``alpha`` is attention's FLOPs per
pair over the layers' FLOPs per token. Time is extrapolated by work, so a long-tailed set's few
long examples cost what they really do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PER_EXAMPLE = "per_example"   # varlen/flash attention on packed rows: Σ L(L+1)/2 pairs
FULL_ROW = "full_row"         # a mask over the whole (packed or padded) row: width² pairs a row
GROUPED_DRAWS = 8             # draws of the length-grouped order averaged (it cannot be reproduced)


@dataclass
class Workload:
    examples: int            # training examples of the run
    measured: int            # examples whose lengths this was computed from (a sample of big sets)
    batch_size: int
    grad_accum: int
    packed: bool
    steps: int               # optimizer steps of the run
    steps_per_epoch: int
    micro_batches: float     # micro-batches the run processes
    tokens: int              # positions the model computes over the run, padding and virtual tokens included
    real_tokens: int         # non-padding tokens of the data (virtual tokens not included)
    trained_tokens: int      # tokens that carry loss
    work: float              # tokens + alpha × attention pairs, over the run
    largest: int             # positions of the run's largest micro-batch (where its memory peaks)
    exact: bool              # the trainer's very batches (its seeded random sampler, all lengths known)
    micro: list = field(repr=False)         # epoch 0's micro-batches (indices into the measured examples)
    micro_tokens: list = field(repr=False)  # positions computed in each of those
    micro_work: list = field(repr=False)    # work of each of those

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def padding_fraction(self) -> float:
        return 1 - self.real_tokens / self.tokens if self.tokens else 0.0


def attention_alpha(hf_config, total_params: int) -> float:
    """Attention FLOPs per query-key pair (QKᵀ and the weighted sum of V, all layers) over the
    matmul FLOPs per token (about 2 × the parameters, the LM head included even when tied)."""
    layers = int(getattr(hf_config, "num_hidden_layers", 0) or 0)
    heads = int(getattr(hf_config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(hf_config, "hidden_size", 0) or 0)
    head_dim = int(getattr(hf_config, "head_dim", 0) or (hidden // heads if heads else 0))
    vocab = int(getattr(hf_config, "vocab_size", 0) or 0)
    per_token = 2 * (total_params + (vocab * hidden if getattr(hf_config, "tie_word_embeddings", False) else 0))
    return 4 * layers * heads * head_dim / per_token if per_token > 0 else 0.0


def epoch_order(lengths: list[int], batch_size: int, grad_accum: int, grouped: bool, seed: int,
                epoch: int = 0) -> list[int]:
    """The order epoch ``epoch`` visits the examples in: the trainer's seeded random sampler, or
    a simulation of its length-grouped sampler (mega-batches of batch × accumulation)."""
    import torch

    g = torch.Generator().manual_seed(seed + epoch)
    if grouped:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return [int(i) for i in get_length_grouped_indices(lengths, batch_size * grad_accum, generator=g)]
    return torch.randperm(len(lengths), generator=g).tolist()


def _micro_figures(mb, lengths, packed, virtual, attention, alpha) -> tuple[int, float]:
    """(positions, work) of one micro-batch."""
    if packed:
        tokens = sum(lengths[j] for j in mb)
        pairs = (sum(lengths[j] * (lengths[j] + 1) // 2 for j in mb) if attention == PER_EXAMPLE
                 else tokens * tokens)
    else:
        width = max(lengths[j] for j in mb) + virtual
        tokens = len(mb) * width
        pairs = len(mb) * width * width
    return tokens, tokens + alpha * pairs


def plan_workload(lengths: list[int], trained: list[int], cfg, packed: bool, virtual_tokens: int = 0,
                  examples: int | None = None, seed: int | None = None, attention: str = PER_EXAMPLE,
                  alpha: float = 0.0) -> Workload:
    """The run's workload. ``lengths``/``trained``: tokens and loss-bearing tokens per prepared
    training example (all of them, or a sample standing for ``examples``); ``packed``: whether
    the run packs (prompt-based methods cannot); ``virtual_tokens``: prepended to every example
    by prompt tuning / P-tuning (prefix tuning's are keys and values, not positions);
    ``attention``: PER_EXAMPLE or FULL_ROW (how packed rows attend); ``alpha``: attention_alpha."""
    if not lengths:
        raise ValueError("no training examples")
    t = cfg.train
    b, accum = int(t.batch_size), int(t.grad_accum)
    n = int(examples) if examples else len(lengths)
    seed = int(t.seed if seed is None else seed)
    grouped = bool(t.group_by_length) and not packed

    # The Trainer's arithmetic (transformers' _get_training_steps): a short last accumulation
    # group still makes a step.
    micro_per_epoch = math.ceil(n / b)
    steps_per_epoch = max(micro_per_epoch // accum + int(micro_per_epoch % accum > 0), 1)
    steps = int(t.max_steps) if t.max_steps and t.max_steps > 0 else math.ceil(t.epochs * steps_per_epoch)

    epoch = _epoch_fn(lengths, b, accum, grouped, seed, packed, virtual_tokens, attention, alpha)
    micro, micro_tokens, micro_work = epoch(0)
    # Walk the run's micro-batches in order whenever all lengths are known: the trainer's own for
    # the random sampler; for length grouping (global RNG, not reproducible) the mean of a few
    # draws of the same structure — its first batches are the longest of their mega-batch, so a
    # short grouped run is far heavier than its epoch average, and one draw is a noisy guess.
    if n == len(lengths):
        draws = [_walk(epoch, micro, micro_tokens, micro_work, lengths, trained, steps, accum)]
        if grouped:
            for k in range(1, GROUPED_DRAWS):
                again = _epoch_fn(lengths, b, accum, True, seed + 1000 * k, packed, virtual_tokens, attention, alpha)
                draws.append(_walk(again, *again(0), lengths, trained, steps, accum))
        mean = [sum(d[i] for d in draws) / len(draws) for i in range(5)]
        return Workload(examples=n, measured=len(lengths), batch_size=b, grad_accum=accum, packed=packed,
                        steps=steps, steps_per_epoch=steps_per_epoch, micro_batches=mean[4],
                        tokens=round(mean[0]), real_tokens=round(mean[1]), trained_tokens=round(mean[2]),
                        work=mean[3], largest=max(d[5] for d in draws), exact=not grouped, micro=micro,
                        micro_tokens=micro_tokens, micro_work=micro_work)

    micro_run = steps / steps_per_epoch * micro_per_epoch
    scale = micro_run / len(micro)                    # measured micro-batches → the run's
    return Workload(
        examples=n, measured=len(lengths), batch_size=b, grad_accum=accum, packed=packed, steps=steps,
        steps_per_epoch=steps_per_epoch, micro_batches=micro_run, tokens=round(sum(micro_tokens) * scale),
        real_tokens=round(sum(lengths) * scale), trained_tokens=round(sum(trained) * scale),
        work=sum(micro_work) * scale, largest=max(micro_tokens), exact=False, micro=micro, micro_tokens=micro_tokens, micro_work=micro_work)


def _epoch_fn(lengths, b, accum, grouped, seed, packed, virtual, attention, alpha):
    """epoch(e) → (micro-batches, their positions, their work) of epoch e."""
    def epoch(e):
        order = epoch_order(lengths, b, accum, grouped, seed, e)
        mbs = [order[i:i + b] for i in range(0, len(order), b)]
        figures = [_micro_figures(mb, lengths, packed, virtual, attention, alpha) for mb in mbs]
        return mbs, [f[0] for f in figures], [f[1] for f in figures]
    return epoch


def _walk(epoch, micro, micro_tokens, micro_work, lengths, trained, steps, accum):
    """(positions, data tokens, trained tokens, work, micro-batches, largest) of the run's steps,
    epoch by epoch in order; epoch 0 is given, later ones drawn by ``epoch``."""
    tokens = real = trained_n = largest = micro_run = 0
    work, left, e = 0.0, steps, 0
    while left > 0:
        mbs, toks, wks = (micro, micro_tokens, micro_work) if e == 0 else epoch(e)
        take = min(len(mbs), left * accum)       # whole accumulation groups, the last one short
        left -= math.ceil(take / accum)
        for mb, tk, wk in zip(mbs[:take], toks[:take], wks[:take]):
            tokens += tk
            work += wk
            largest = max(largest, tk)
            real += sum(lengths[j] for j in mb)
            trained_n += sum(trained[j] for j in mb)
        micro_run += take
        e += 1
    return tokens, real, trained_n, work, micro_run, largest
