"""Building the peft tuners that derive their adapter from the weights on a meta-device model.

The estimator and preflight build every method on a model without weights (``meta`` tensors).
A few tuners compute something from the weights while they attach: SHiRA draws a random sparse
mask and turns it into indices (``torch.where``, data-dependent), FRoD decomposes each projection category
(QR/SVD over all its layers) and solves for per-layer factors. None of that can run on meta
tensors, yet the *shapes* of what they create depend only on the layers' shapes and the config.

``standin(name, conf, model)`` is a context inside which peft's own ``get_peft_model`` builds
such a tuner on a meta model with stand-ins of the right shapes for the weight-derived tensors:
target matching, bias and modules_to_save handling, and the trainable parameters themselves stay
peft's. Outside a meta build it changes nothing, and the patched peft methods hand every
non-meta model to the originals. ``tests/engine/test_estimate_counts.py`` compares the counts
with real builds on real weights.

AdaMSS cannot have one: the sizes of its trainable matrices follow a k-means clustering of the
weights' singular vectors, which config.json alone does not determine.
"""

from __future__ import annotations

import contextlib

from engine.errors import ConfigError

# Tuners whose size depends on the weight values themselves: why they cannot be sized on meta.
WEIGHT_DEPENDENT = {
    "adamss": "the sizes of its trainable matrices follow a k-means clustering of the pretrained weights' "
              "singular vectors, which needs the weights themselves",
}


def _zeros(*shape, dtype):
    """A CPU tensor of ``shape`` backed by a single element (a stand-in that costs no memory)."""
    import torch

    return torch.zeros((), dtype=dtype).expand(*shape)


def _on_meta(module) -> bool:
    p = next(module.parameters(), None)
    return p is not None and p.device.type == "meta"


@contextlib.contextmanager
def _shira(conf, model):
    """SHiRA trains ``r·(in+out)`` entries of each weight at indices drawn from a random mask;
    only the number of indices matters for the sizes. The stand-in mask is a meta row of that
    many entries, read as all ones (peft still refuses an r that asks for more entries than the
    layer has), so that the indices are meta tensors of the real shape too."""
    import torch
    from peft.tuners.tuners_utils import _get_in_out_features
    from torch.fx.experimental import _config as fx_config

    def mask_fn(base_layer, r, **kwargs):
        in_f, out_f = _get_in_out_features(base_layer)
        return torch.empty(1, r * (in_f + out_f), dtype=torch.bool, device="meta")

    real = conf.mask_fn
    conf.mask_fn = mask_fn
    try:
        with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
            yield
    finally:
        conf.mask_fn = real


def _frod_nnz(in_dim: int, sparse_rate: float) -> int:
    """The off-diagonal entries FRoD's sparse rotation trains (peft's ``_init_frod_projections``)."""
    off_diagonal = in_dim * in_dim - in_dim
    nnz = min(int(in_dim * in_dim * sparse_rate), off_diagonal)
    if sparse_rate > 0 and off_diagonal > 0:
        nnz = max(1, nnz)
    return nnz


@contextlib.contextmanager
def _frod(conf, model):
    """FRoD shares, per projection category (q_proj, down_proj, ...), an ``in × in`` basis V
    from a decomposition of all the category's weights and a sparse pattern of ``nnz`` entries;
    each layer trains ``in`` scales and ``nnz`` sparse values and keeps a frozen ``out × in`` U.
    The stand-ins have those shapes and no storage."""
    from collections import defaultdict

    import torch
    from peft.tuners._buffer_dict import BufferDict
    from peft.tuners.frod import layer as frod_layer
    from peft.tuners.frod import model as frod_model
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    real_init = frod_model.FrodModel._init_frod_projections
    real_factors = frod_layer.FrodLayer._calculate_frod_u_and_lambda

    def init(self, config, adapter_name):
        if not _on_meta(self.model):
            return real_init(self, config, adapter_name)
        weights = defaultdict(dict)  # as peft's: layer index -> category -> weight
        peft_config = self._prepare_adapter_config(config, self.get_model_config(self.model))
        peft_config = _maybe_include_all_linear_layers(peft_config, self.model)
        fallback = 0
        for key, module in self.model.named_modules():
            if not self._check_target_module_exists(peft_config, key):
                continue
            if isinstance(module, nn.Linear):
                weight = module.weight
            elif isinstance(module, Conv1D):
                weight = module.weight.T
            else:
                continue
            weights[frod_model._layer_index_from_key(key, fallback)][frod_model._category_from_key(key)] = weight
            fallback += 1
        if not weights:
            raise ValueError("No layer types compatible with FRoD were found. Please check "
                             "`peft_config.target_modules`.")
        if not hasattr(self, "frod_V"):
            self.frod_V, self.frod_s_indices, self.frod_s_size = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for category in sorted({c for layer in weights.values() for c in layer}):
            example = next(layer[category] for layer in weights.values() if category in layer)
            in_dim = example.shape[1]  # V is in × in whether peft takes the QR or the SVD path
            nnz = _frod_nnz(in_dim, config.sparse_rate)
            for store, name, value in (
                    (self.frod_V, category, _zeros(in_dim, in_dim, dtype=example.dtype)),
                    (self.frod_s_indices, category, _zeros(2, nnz, dtype=torch.long)),
                    (self.frod_s_size, category, torch.tensor([in_dim, in_dim], dtype=torch.long))):
                if name not in store:
                    store[name] = BufferDict({}, persistent=config.save_projection)
                store[name][adapter_name] = value

    def factors(self, V, W):
        if W.device.type != "meta":
            return real_factors(self, V, W)
        # U (out × in, frozen) and the trainable scales λ (in), in the weight's dtype so that
        # peft's casts keep the U stand-in storage-free.
        return _zeros(W.shape[0], V.shape[1], dtype=W.dtype), torch.zeros(V.shape[1], dtype=W.dtype)

    frod_model.FrodModel._init_frod_projections = init
    frod_layer.FrodLayer._calculate_frod_u_and_lambda = factors
    try:
        yield
    finally:
        frod_model.FrodModel._init_frod_projections = real_init
        frod_layer.FrodLayer._calculate_frod_u_and_lambda = real_factors


STANDINS = {"shira": _shira, "frod": _frod}


def standin(name: str, title: str, conf, model):
    """The context to build tuner ``name`` inside: a stand-in on a meta model, else nothing.
    A tuner whose size needs the weights is refused on meta with the reason (a ConfigError)."""
    if not _on_meta(model):
        return contextlib.nullcontext()
    if name in WEIGHT_DEPENDENT:
        raise ConfigError("method.name", f"{title}'s parameter count cannot be computed from the model's "
                          f"config alone: {WEIGHT_DEPENDENT[name]}", name)
    if name in STANDINS:
        return STANDINS[name](conf, model)
    return contextlib.nullcontext()
