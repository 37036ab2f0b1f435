"""The chunked linear cross-entropy equals the standard one: loss and gradients (fp32)."""

from __future__ import annotations

import pytest

from engine.training.loss import auto_chunk_tokens, linear_cross_entropy_sum, resolve_loss_impl


def _data(n=37, h=16, v=53, bias=True, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float32, requires_grad=True)
    weight = (torch.randn(v, h, generator=g) * 0.3).requires_grad_(True)
    b = (torch.randn(v, generator=g) * 0.1).requires_grad_(True) if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, b, targets


@pytest.mark.parametrize("chunk", [1, 7, 37, 1000])
@pytest.mark.parametrize("bias", [True, False])
def test_loss_and_gradients_match_cross_entropy(chunk, bias):
    import torch
    import torch.nn.functional as F

    hidden, weight, b, y = _data(bias=bias)
    ref = F.cross_entropy(F.linear(hidden, weight, b), y, reduction="sum")
    ref_grads = torch.autograd.grad(ref * 0.37, [t for t in (hidden, weight, b) if t is not None])
    got = linear_cross_entropy_sum(hidden, weight, b, y, chunk)
    got_grads = torch.autograd.grad(got * 0.37, [t for t in (hidden, weight, b) if t is not None])
    assert abs(got.item() - ref.item()) <= 1e-4 * max(1.0, abs(ref.item()))
    for r, g_ in zip(ref_grads, got_grads):
        assert g_.dtype == r.dtype and g_.shape == r.shape
        assert torch.allclose(g_, r, atol=1e-5, rtol=1e-4)


def test_frozen_head_gets_no_gradient_and_no_grad_mode_works():
    import torch

    hidden, weight, _, y = _data(bias=False)
    weight.requires_grad_(False)
    loss = linear_cross_entropy_sum(hidden, weight, None, y, 8)
    (gh,) = torch.autograd.grad(loss, [hidden])
    assert gh.abs().sum() > 0
    with torch.no_grad():
        again = linear_cross_entropy_sum(hidden, weight, None, y, 8)
    assert not again.requires_grad and abs(again.item() - loss.item()) < 1e-5


def test_auto_chunk_is_a_bounded_power_of_two():
    for vocab, expect in [(49152, 1024), (151936, 256), (128256, 512), (320, 8192)]:
        assert auto_chunk_tokens(vocab) == expect


def test_auto_loss_is_chunked_without_cuda_or_liger():
    assert resolve_loss_impl("auto", "cpu") == "chunked"
    assert resolve_loss_impl("standard", "cuda") == "standard"
