"""Causal-LM loss from hidden states, without the full batch × sequence × vocabulary logits.

The standard path (``model(**batch, labels=...)``) projects every position onto the vocabulary,
upcasts all of those logits to fp32 and keeps them for the backward pass: for a 150k vocabulary
and 16k tokens that is ~10 GB, the largest single tensor of a LoRA run. It also projects
positions that carry no loss (the prompt, the system message), which is wasted work: in
instruction tuning often half the tokens.

Here the model returns its last hidden states (the LM head is bypassed for the call), the
positions whose label is not -100 are selected, and the loss is computed chunk by chunk. Each
chunk's gradient with respect to its hidden states (and to the head, if it trains) is computed
in the forward pass and its logits are freed at once, so only one chunk of logits exists at a
time (the scheme of Liger's fused linear cross-entropy and torchtune's chunked loss). On CUDA,
when ``liger_kernel`` is importable, Liger's Triton kernel does the same in one fused pass.

The result equals the standard loss (mean over the labelled tokens, or the sum divided by the
Trainer's ``num_items_in_batch`` under gradient accumulation), and so do the gradients.
"""

from __future__ import annotations

import math

# Architectures whose forward is exactly `logits = lm_head(last_hidden_state)` then the standard
# causal-LM loss (checked against transformers 5.23). Others scale or soft-cap the logits
# (granite, cohere, gemma2/3) or add an auxiliary loss (MoE) and keep the standard path.
PLAIN_HEAD_MODEL_TYPES = frozenset({
    "llama", "mistral", "ministral", "qwen2", "qwen3", "phi", "phi3", "gemma", "olmo", "olmo2",
    "starcoder2", "smollm3",
})


def auto_chunk_tokens(vocab_size: int) -> int:
    """Tokens per chunk so that one chunk of fp32 logits is about 256 MB (a power of two)."""
    budget = (1 << 26) // max(1, vocab_size)
    return int(min(8192, max(256, 1 << max(0, int(math.log2(max(1, budget)))))))


def _chunked_class():
    import torch

    class ChunkedLinearCrossEntropy(torch.autograd.Function):
        """sum over rows of CE(hidden @ weight.T + bias, targets); every target is valid."""

        @staticmethod
        def forward(ctx, hidden, weight, bias, targets, chunk, needs):
            need_h, need_w, need_b = needs
            n = hidden.shape[0]
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
            for s in range(0, n, chunk):
                h, y = hidden[s:s + chunk], targets[s:s + chunk]
                # In the head's own dtype, as lm_head computes it. The hidden states may arrive in
                # another one (fp32 out of k-bit-prepared fp32 norms while the frozen head stays
                # bf16; this runs outside the model's autocast): a mixed matmul raises "float !=
                # BFloat16" (QLoRA with model.dtype bfloat16 on the CPU).
                if h.dtype != weight.dtype:
                    h = h.to(weight.dtype)
                raw = h @ weight.t()  # under autocast this is the half-precision matmul, as in lm_head
                logits = raw.float()  # the fp32 upcast happens one chunk at a time
                if bias is not None:
                    logits = logits + bias.float()
                lse = torch.logsumexp(logits, dim=-1)
                total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
                if not (need_h or need_w or need_b):
                    continue
                # d(sum CE)/d logits = softmax - onehot, computed in place over the chunk's logits.
                probs = logits.sub_(lse[:, None]).exp_()
                probs[torch.arange(probs.shape[0], device=probs.device), y] -= 1.0
                g = probs.to(raw.dtype)
                if need_h:
                    grad_h[s:s + chunk] = g @ weight.to(raw.dtype)
                if need_w:
                    grad_w += probs.t() @ h.float()
                if need_b:
                    grad_b += probs.sum(0)
            ctx.save_for_backward(*(t for t in (grad_h, grad_w, grad_b) if t is not None))
            ctx.needs = needs
            ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
            return total

        @staticmethod
        def backward(ctx, grad_out):
            saved = list(ctx.saved_tensors)
            out = []
            for need, dtype in zip(ctx.needs, ctx.dtypes):
                out.append((saved.pop(0) * grad_out).to(dtype) if need else None)
            return out[0], out[1], out[2], None, None, None

    return ChunkedLinearCrossEntropy


_FN = None


def linear_cross_entropy_sum(hidden, weight, bias, targets, chunk: int = 1024):
    """Sum of token cross-entropies of ``hidden @ weight.T (+ bias)`` against ``targets``.

    ``hidden`` is (N, H) and every target is a real label (select away -100 first). Never builds
    more than ``chunk`` rows of logits; gradients flow to hidden, weight and bias as needed.
    """
    import torch

    global _FN
    if _FN is None:
        _FN = _chunked_class()
    grad = torch.is_grad_enabled()
    needs = (grad and hidden.requires_grad, grad and weight.requires_grad,
             grad and bias is not None and bias.requires_grad)
    return _FN.apply(hidden, weight, bias, targets, max(1, int(chunk)), needs)


def _liger_sum(hidden, weight, bias, targets):
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(hidden, weight, targets, bias=bias, reduction="sum")


def liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


class _HiddenFromHead:
    """While active, the LM head returns its input: the model's `logits` are its hidden states.

    Setting an instance attribute shadows the class's ``forward`` (nn.Module.__call__ looks it up
    on the instance); a forward already set on the instance (accelerate's device hooks) is put back.
    """

    def __init__(self, head):
        self.head = head

    def __enter__(self):
        self.saved = self.head.__dict__.get("forward")
        self.head.forward = _identity
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            del self.head.forward
        else:
            self.head.forward = self.saved
        return False


def _identity(x, *args, **kwargs):
    return x


class LinearCrossEntropyLoss:
    """Computes a causal-LM batch's loss from hidden states (see the module docstring)."""

    def __init__(self, head, impl: str, chunk_tokens: int):
        self.head, self.impl, self.chunk = head, impl, chunk_tokens
        self._liger_failed = False

    def __call__(self, model, inputs: dict, num_items_in_batch=None):
        labels = inputs["labels"]
        shift = inputs.get("shift_labels")
        rest = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
        with _HiddenFromHead(self.head):
            out = model(**rest)
        hidden = out["logits"] if isinstance(out, dict) else out[0]
        if shift is None:  # position t predicts label t+1, as in transformers' ForCausalLMLoss
            hidden, shift = hidden[:, :-1], labels[:, 1:]
        keep = shift != -100
        h = hidden[keep]
        y = shift[keep].to(h.device)
        total = self._sum(h, y)
        denom = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        if not isinstance(denom, int):
            denom = denom.to(total.device)
        return total / denom

    def _sum(self, h, y):
        w, b = self.head.weight, self.head.bias
        if self.impl == "liger" and not self._liger_failed:
            try:
                return _liger_sum(h, w, b, y)
            except Exception as e:  # an incompatible Liger version: keep training with the chunked path
                self._liger_failed = True
                import warnings

                warnings.warn(f"Liger fused linear cross-entropy failed ({e}); using the chunked loss.",
                              stacklevel=2)
        return linear_cross_entropy_sum(h, w, b, y, self.chunk)


def _base_causal_lm(model):
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def why_standard(model) -> str | None:
    """None when the hidden-state loss applies to this model, else the reason it does not."""
    import torch

    cfg = getattr(model, "peft_config", None)
    active = getattr(model, "active_peft_config", None) if cfg else None
    if active is not None and getattr(active, "is_prompt_learning", False):
        return "prompt-learning methods add virtual tokens inside peft's forward"
    base = _base_causal_lm(model)
    mtype = getattr(getattr(base, "config", None), "model_type", None)
    if mtype not in PLAIN_HEAD_MODEL_TYPES:
        return f"the {mtype} architecture is not known to use a plain LM head"
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear:
        return "the LM head is adapted or wrapped (e.g. LoRA on lm_head, modules_to_save)"
    return None


def resolve_loss_impl(requested: str, device: str) -> str:
    """`auto` → Liger on CUDA when installed, else the chunked loss."""
    if requested == "auto":
        return "liger" if device == "cuda" and liger_available() else "chunked"
    return requested


def make_loss(model, requested: str, chunk_tokens: int, device: str):
    """(loss or None for the model's own loss, a sentence saying what was chosen and why)."""
    impl = resolve_loss_impl(requested, device)
    if impl == "standard":
        return None, "Loss: the model's own cross-entropy (train.loss_impl: standard)."
    reason = why_standard(model)
    if reason:
        return None, f"Loss: the model's own cross-entropy ({reason})."
    if impl == "liger" and not liger_available():
        impl = "chunked"
        note = " (liger_kernel is not installed)"
    else:
        note = ""
    head = _base_causal_lm(model).get_output_embeddings()
    chunk = chunk_tokens or auto_chunk_tokens(head.weight.shape[0])
    what = ("Liger's fused linear cross-entropy" if impl == "liger"
            else f"chunked linear cross-entropy, {chunk} tokens a chunk{note}")
    return LinearCrossEntropyLoss(head, impl, chunk), f"Loss: {what}, on labelled positions only."


class FastLossMixin:
    """A Trainer mixin: the training loss through ``fast_loss`` when one is set.

    Evaluation (``return_outputs=True``: the Trainer wants logits) keeps the standard path.
    """

    fast_loss = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        fast = self.fast_loss
        if fast is None or return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss = fast(model, inputs, num_items_in_batch)
        # The same rescaling as Trainer.compute_loss: with tokens averaged across devices the
        # gradient all-reduce averages, so each rank's loss is multiplied back by the world size.
        if (self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs
                and num_items_in_batch is not None):
            loss = loss * (self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1
                           else self.args.n_gpu)
        return loss
