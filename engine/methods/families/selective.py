"""Selective (freeze) fine-tuning: chosen layers or parameter types train in full, the rest is frozen.

Not a peft tuner: the trained tensors are the model's own. They are saved alone (the "changed
tensors" format of engine/methods/saved.py) and copied back onto a freshly loaded base; that
restored model *is* the merged model, so merging is free and exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.fields import F
from engine.methods.incompatible import NO_FP16_TRAINED_WEIGHTS
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field
from engine.methods.storage import freeze_except, load_changed, merged, save_changed

SELECTIVE_TYPES = ["attention", "mlp", "norm", "bias"]


@dataclass
class SelectiveParams(MethodParams):
    """Selective fine-tuning: train chosen layers (the last N, or by name) or parameter types in full;
    everything else stays frozen."""

    name: str = name_field("selective")

    last_n_layers: int = F(2, "Train the last N decoder layers (0: every layer; narrow it with param_types).",
                           minimum=0, maximum=10_000)
    param_types: list = F(default_factory=list, help="Inside those layers, only these kinds of parameters: "
                          "attention, mlp, norm, bias (empty: all kinds). E.g. last_n_layers 0 + [norm] trains "
                          "every normalisation layer.")
    name_patterns: list = F(default_factory=list, help="Instead of layers: train exactly the parameters whose "
                            "name matches one of these regular expressions, e.g. [lm_head, 'layers\\.0\\.'].",
                            advanced=True)


# `...layers.7.mlp...`, GPT-2's `h.7.`, others' `blocks.7.`: the decoder layer index.
LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")
_KIND_PARTS = {
    "attention": ("attn", "attention"),
    "mlp": ("mlp", "feed_forward", "ffn"),
    "norm": ("norm", "ln_"),
}


def layer_index(name: str) -> int | None:
    m = LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def kinds_of(name: str) -> set[str]:
    out = {k for k, parts in _KIND_PARTS.items() if any(p in name for p in parts)}
    if name.endswith(".bias"):
        out.add("bias")
    return out


def select(names: list[str], params) -> list[str]:
    """The parameter names selective fine-tuning trains: those matching ``name_patterns`` when
    given; otherwise those in the last ``last_n_layers`` layers (0: all), of ``param_types``."""
    if params.name_patterns:
        patterns = [re.compile(p) for p in params.name_patterns]
        return [n for n in names if any(p.search(n) for p in patterns)]
    layers = [i for i in map(layer_index, names) if i is not None]
    n_layers = max(layers) + 1 if layers else 0
    first = n_layers - params.last_n_layers if params.last_n_layers else 0
    types = set(params.param_types)
    return [n for n in names if (i := layer_index(n)) is not None and i >= first
            and (not types or bool(kinds_of(n) & types))]


def _check_params(params, names: list[str], model_type: str) -> list[str]:
    bad = [t for t in params.param_types if t not in SELECTIVE_TYPES]
    if bad:
        raise ConfigError("method.param_types", "unknown parameter type", bad, choices=SELECTIVE_TYPES)
    for p in params.name_patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise ConfigError("method.name_patterns", f"{p!r} is not a regular expression ({e})") from None
    layers = {i for i in map(layer_index, names) if i is not None}
    if params.last_n_layers > len(layers):
        raise ConfigError("method.last_n_layers", f"this {model_type} model has only {len(layers)} decoder "
                          "layers", params.last_n_layers)
    chosen = select(names, params)
    if not chosen:
        field = "method.name_patterns" if params.name_patterns else "method.param_types"
        raise ConfigError(field, f"selects no parameter of this {model_type} model", params.name_patterns
                          or params.param_types)
    return chosen


def build(model, cfg, ctx):
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    chosen = _check_params(cfg.method, names, ctx.model_type)
    freeze_except(model, chosen, "selective", cfg.method)
    return model


def check(cfg, ctx):
    _check_params(cfg.method, ctx.param_names, ctx.model_type)


register(MethodSpec(
    incompatible=(NO_FP16_TRAINED_WEIGHTS,),
    name="selective", title="Selective", family="partial", params=SelectiveParams, build=build, can_merge=True,
    check=check, save=save_changed, load=load_changed, merge=merged, supports_quantized_base=False,
    saved_as="tensors", suggested_lr=5e-4,
    description="Trains the last N layers (or layers/parameters chosen by name or type) in full; saves only "
                "those tensors."))
