"""Activation memory: traced at tiny width, fitted, and scaled to the real shape.

The bytes one decoder layer saves for backward are a sum of tensors whose sizes are products of
the batch, the sequence length and one width each: the hidden size, the MLP width, the query,
key/value and head widths, or (eager attention) a score matrix of seq × key-length per head.
So per sequence of T positions (P key/value prefix positions for prefix tuning, key length
Tk = T + P) the saved bytes are an exact linear form

    bytes = c · [B·T·H, B·T·I, B·T·Q, B·T·KV, B·T·heads, B·T·head_dim, B·T, B·P·KV, B·P·Q,
                 B·T·Tk·heads, H, I, Q, KV]

                 H·Q, H·KV, H·I]

(B the batch; H, I, Q, KV are per-step tensors sized by a width alone, such as DoRA's magnitude
scales; the weight-shaped terms are copies of weights kept for backward, such as the fp32 weight
DoRA multiplies its dropped-out input with) whose coefficients are small multiples of element sizes (2 for a bf16 tensor, 4 for an fp32
upcast, 1 for a dropout mask...). We measure the layer on a dozen tiny variants of the real
architecture (see ``trace.py``), solve for ``c`` by least squares, check the fit is exact, and
evaluate the form at the real sizes. Everything outside the layers (embeddings, final norm,
the output head and the loss) gets the same treatment with the vocabulary as a width.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.estimate.trace import build_model, trace_model
from engine.methods import for_meta, get_method
from engine.models.arch import shrink_config

LAYER_FEATURES = ("B*T*H", "B*T*I", "B*T*Q", "B*T*KV", "B*T*heads", "B*T*head_dim", "B*T", "B*P*KV",
                  "B*P*Q", "B*T*Tk*heads", "B*T*Tk", "H", "I", "Q", "KV", "H*Q", "H*KV", "H*I", "T*head_dim", "1")
OUTSIDE_FEATURES = ("B*T*H", "B*T*V", "B*T*head_dim", "B*T", "B*P*H", "B*P*KV*L", "B", "1")
LOGITS = OUTSIDE_FEATURES.index("B*T*V")

# Tiny widths (hidden, mlp, heads, kv_heads, head_dim), each traced at several (batch, seq)
# shapes: building the model is the expensive part, forward passes are cheap. Together they make
# every feature above identifiable (checked: the design matrix has full column rank).
_WIDTHS = [
    (64, 128, 4, 2, 16),
    (96, 128, 4, 2, 16),
    (64, 256, 4, 2, 16),
    (64, 128, 4, 2, 32),
    (64, 128, 8, 2, 16),
    (64, 128, 8, 4, 8),
    (96, 192, 6, 3, 8),
    (128, 192, 4, 2, 32),
    (80, 160, 4, 2, 8),
    (112, 224, 8, 4, 16),
]
# Some methods constrain widths (block sizes of 256, ranks up to 64, group sizes...); for those
# the same design runs at widths that are multiples of 256.
_WIDE = [
    (512, 1024, 4, 2, 128),
    (768, 1024, 4, 2, 128),
    (512, 2048, 4, 2, 128),
    (512, 1024, 4, 2, 256),
    (512, 1024, 8, 2, 128),
    (512, 1024, 8, 4, 64),
    (768, 1536, 4, 4, 64),
    (1024, 1536, 4, 2, 256),
    (512, 1280, 4, 2, 128),
    (768, 1792, 8, 4, 128),
]
_SHAPES = [(1, 8), (2, 16), (3, 24)]          # (batch, seq)
_VOCABS = [96, 160, 128]                      # varied per width so the head's terms separate


@dataclass
class Shape:
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layers: int


def layer_features(s: Shape, B: int, T: int, P: int, eager: bool) -> list[float]:
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    return [B * T * s.hidden, B * T * s.intermediate, B * T * q, B * T * kv, B * T * s.heads,
            B * T * s.head_dim, B * T, B * P * kv, B * P * q, B * T * (T + P) * s.heads if eager else 0.0,
            B * T * (T + P),
            s.hidden, s.intermediate, q, kv, s.hidden * q, s.hidden * kv, s.hidden * s.intermediate,
            T * s.head_dim, 1.0]


def outside_features(s: Shape, B: int, T: int, P: int) -> list[float]:
    return [B * T * s.hidden, B * T * s.vocab, B * T * s.head_dim, B * T, B * P * s.hidden,
            B * P * s.kv_heads * s.head_dim * s.layers, B, 1.0]


@dataclass
class ActivationModel:
    """Fitted coefficients; ``predict`` gives saved bytes for a batch at real sizes."""

    layer: list[float]            # per layer after the first, bytes per feature unit
    first: list[float]            # the first layer (it also holds tensors all layers share)
    outside: list[float]          # embeddings, final norm, head, loss
    hidden_bytes: int             # element size of the residual stream (what checkpointing keeps)
    residual: float               # worst relative misfit over the tiny variants (0 = exact)
    eager: bool
    lengthens: bool               # prompt-based methods that add input positions
    prefix: bool                  # prefix tuning: key/value prefixes instead
    packed: bool = False          # packing: a batch is one row of batch × seq positions

    def positions(self, seq: int, virtual: int) -> tuple[int, int]:
        """(positions the layers process, key/value prefix length)."""
        if self.prefix:
            return seq, virtual
        return (seq + virtual if self.lengthens else seq), 0

    def predict(self, s: Shape, batch: int, seq: int, virtual: int = 0) -> dict:
        if self.packed:
            batch, seq = 1, batch * seq
        T, P = self.positions(seq, virtual)
        lf = layer_features(s, batch, T, P, self.eager)
        per = _dot(self.layer, lf)
        first = _dot(self.first, lf)
        of = outside_features(s, batch, T, P)
        logits_saved = self.outside[LOGITS] * of[LOGITS]      # what the loss keeps per vocab entry
        outside = _dot(self.outside, of) - logits_saved
        return {
            "per_layer": max(per, 0.0),
            "layers": max(first + (s.layers - 1) * per, 0.0),
            "outside": max(outside, 0.0),
            "logits_saved": max(logits_saved, 0.0),
            "logits_saved_per_element": self.outside[LOGITS],
            "checkpointed": batch * s.layers * T * s.hidden * self.hidden_bytes,
            "positions": T,
        }


def _dot(a, b) -> float:
    return float(sum(x * y for x, y in zip(a, b)))


def _lstsq(rows: list[list[float]], ys: list[float]) -> tuple[list[float], float]:
    import numpy as np

    X = np.array(rows, dtype=np.float64)
    y = np.array(ys, dtype=np.float64)
    # Columns that are identically zero (no eager scores, no prefix) are left out of the solve.
    keep = [j for j in range(X.shape[1]) if np.any(X[:, j])]
    coef = np.zeros(X.shape[1])
    if keep:
        # Relative errors matter, so rows are weighted by 1/y; columns are scaled so the solve
        # is well conditioned. Collinear widths (hidden == heads × head_dim where head_dim is
        # not free) get the min-norm split, which predicts the same for that architecture.
        w = 1.0 / np.maximum(np.abs(y), 1.0)
        Xs = X[:, keep] * w[:, None]
        norms = np.linalg.norm(Xs, axis=0)
        sol, *_ = np.linalg.lstsq(Xs / norms, y * w, rcond=None)
        coef[keep] = sol / norms
    pred = X @ coef
    resid = float(np.max(np.abs(pred - y) / np.maximum(np.abs(y), 1.0))) if len(y) else 0.0
    return coef.tolist(), resid


def _variant_ok(arch, h, i, nh, nkv, hd, prefix: bool = False) -> tuple[int, int, int, int, int]:
    """Keep the architecture's constraints: hidden = heads × head_dim where head_dim is not free.
    peft sizes prefix-tuning prefixes from hidden // heads, so prefix variants keep that too."""
    free_head_dim = "head_dim" in arch.hf_config.to_dict() or arch.hidden != arch.heads * arch.head_dim
    if not free_head_dim or prefix:
        h = nh * hd
    # The attention kind changes code paths, so the variants keep the real model's: multi-head
    # (no repeat), multi-query (one KV head: repeat_kv is a free view) or grouped (repeat_kv
    # copies). Head dims stay multiples of 8, as kernels choose their path by it.
    if arch.kv_heads == arch.heads:
        nkv = nh
    elif arch.kv_heads == 1:
        nkv = 1
    elif nkv in (1, nh) or nh % nkv:
        nkv = 2 if nh % 2 == 0 and nh > 2 else nh
    return h, i, nh, nkv, hd


_CACHE: dict[str, ActivationModel] = {}


def _cache_key(arch, run_cfg, dtype, attn, autocast, quantized, packing, padded) -> str:
    m = run_cfg.method
    method = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(m).items()}
    return json.dumps([arch.hf_config.to_json_string(use_diff=False), method, str(dtype), attn, str(autocast),
                       quantized, packing, padded, run_cfg.model.double_quant, run_cfg.model.quantization],
                      sort_keys=True, default=str)


def fit_activation_model(arch, run_cfg, *, dtype, attn: str | None, autocast_dtype=None,
                         quantized: bool = False, packing: bool = False, padded: bool = False) -> ActivationModel:
    """Trace the tiny variants and fit. Cached: an estimate re-run with another batch size or
    sequence length costs nothing."""
    key = _cache_key(arch, run_cfg, dtype, attn, autocast_dtype, quantized, packing, padded)
    if key in _CACHE:
        return _CACHE[key]
    import torch

    spec = get_method(run_cfg.method.name)
    prefix = spec.prompt == "kv_prefix"
    # No tokenizer at tiny width (a soft prompt from text starts random); the memory is the same.
    trace_cfg = copy.deepcopy(for_meta(run_cfg))
    # Checkpointing hides the layers' saved tensors behind its own hooks; the tracer measures
    # the full layer and checkpointing is applied to the result (see ActivationModel.predict).
    trace_cfg.train.gradient_checkpointing = False
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        try:
            rows = _trace_rows(_WIDTHS, arch, trace_cfg, spec, dtype, attn, autocast_dtype, quantized,
                               packing, padded)
        except (ValueError, RuntimeError, AssertionError, IndexError) as e:
            # A method whose parameters need wider layers (block sizes, ranks): go wide.
            try:
                rows = _trace_rows(_WIDE, arch, trace_cfg, spec, dtype, attn, autocast_dtype, quantized,
                                   packing, padded)
            except (ValueError, RuntimeError, AssertionError, IndexError) as e2:
                raise ConfigError("method.name", f"could not trace {spec.title} on a small copy of this "
                                  f"{arch.model_type} model to measure its activations: {e2}") from e
    finally:
        torch.set_num_threads(torch_threads)
    rows_l, rows_o, y_first, y_layer, y_out, hidden_bytes, eager_used = rows
    layer, r1 = _lstsq(rows_l, y_layer)
    first, r2 = _lstsq(rows_l, y_first)
    outside, r3 = _lstsq(rows_o, y_out)
    am = ActivationModel(layer=layer, first=first, outside=outside,
                         hidden_bytes=hidden_bytes or torch.tensor([], dtype=dtype).element_size(),
                         residual=max(r1, r2, r3), eager=eager_used, lengthens=spec.prompt == "input",
                         prefix=prefix, packed=packing and spec.can_pack)
    _CACHE[key] = am
    return am


def _trace_rows(widths, arch, trace_cfg, spec, dtype, attn, autocast_dtype, quantized, packing, padded):
    import torch

    prefix = spec.prompt == "kv_prefix"
    virtual = spec.virtual_tokens(trace_cfg.method)
    packed = packing and spec.can_pack
    rows_l, rows_o, y_first, y_layer, y_out = [], [], [], [], []
    hidden_bytes, eager_used = 0, False
    for k, (h, i, nh, nkv, hd) in enumerate(widths):
        h, i, nh, nkv, hd = _variant_ok(arch, h, i, nh, nkv, hd, prefix)
        V = _VOCABS[k % len(_VOCABS)]
        tiny = shrink_config(arch.hf_config, hidden=h, intermediate=i, heads=nh, kv_heads=nkv,
                             head_dim=hd, layers=2, vocab=V)
        with torch.no_grad():
            model = build_model(tiny, trace_cfg, dtype, attn, quantized=quantized)
        eager_used = _attn_of(model) == "eager"
        s = Shape(h, i, nh, nkv, hd, V, 2)
        for B, T in _SHAPES:
            r = trace_model(model, V, B, T, packing=packed, padded=padded, autocast_dtype=autocast_dtype,
                            prompt_based=spec.prompt_based, virtual=0 if prefix else virtual)
            hidden_bytes = r.hidden_bytes or hidden_bytes
            Bf, Tf = (1, B * T) if packed else (B, T)     # packing flattens a batch into one row
            Tp = Tf if prefix else Tf + virtual
            P = virtual if prefix else 0
            rows_l.append(layer_features(s, Bf, Tp, P, eager_used))
            rows_o.append(outside_features(s, Bf, Tp, P))
            y_first.append(r.layer_bytes[0])
            y_layer.append(r.per_layer)
            y_out.append(r.outside_bytes)
        del model
    return rows_l, rows_o, y_first, y_layer, y_out, hidden_bytes, eager_used


def _attn_of(model) -> str:
    cfg = getattr(model, "config", None)
    impl = getattr(cfg, "_attn_implementation", None)
    return str(impl or "sdpa")
