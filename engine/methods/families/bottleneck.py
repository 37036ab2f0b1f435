"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), written here.

Why not a library: the maintained one, `adapters` 1.3.0 (AdapterHub), pins transformers~=4.57
and does not even import beside our transformers 5.23 / huggingface_hub 1.x (it imports
`HfFolder`, which the hub library removed); peft has no bottleneck tuner. The method is small:
a down-projection, a nonlinearity and a zero-initialised up-projection with a residual, applied
to the output of each layer's attention output projection and/or MLP output projection, i.e.
after the sublayer and before the decoder's own residual add. A forward hook applies it, so
the base model's modules and parameter names stay exactly as they were.

Saved like the other non-peft methods (engine/methods/storage.py): the adapter tensors and the
sites they sit at. Not mergeable: the nonlinearity cannot be folded into a linear weight.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

from engine.errors import ConfigError
from engine.fields import F
from engine.methods import storage as store
from engine.methods.apply import prepare_quantized
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field


@dataclass
class BottleneckParams(MethodParams):
    """Bottleneck adapters: small down-project → nonlinearity → up-project blocks with a residual,
    after the attention and/or MLP of every layer (Houlsby / Pfeiffer)."""

    name: str = name_field("bottleneck")

    reduction_factor: int = F(16, "Bottleneck width = hidden size / this (16 on a 576-wide model: 36).",
                              minimum=1, maximum=4096)
    placement: str = F("houlsby", "Where adapters go: houlsby (after attention and after the MLP), "
                       "pfeiffer (after the MLP only) or attention (after attention only).",
                       choices=["houlsby", "pfeiffer", "attention"])
    nonlinearity: str = F("relu", "Activation inside the bottleneck.", choices=["relu", "gelu", "silu", "tanh"])
    scaling: float = F(1.0, "The adapter's output is multiplied by this before the residual add.",
                       minimum=0.0, advanced=True)
    dropout: float = F(0.0, "Dropout inside the bottleneck during training.", minimum=0.0, maximum=0.9,
                       advanced=True)


CHILD = "bottleneck_adapter"
# The attention output / MLP output projection of a decoder layer, across common architectures
# (Llama/Mistral/Qwen o_proj+down_proj, GPT-2 c_proj, GPT-NeoX/Falcon dense+dense_4h_to_h, Phi fc2, OPT).
ATTN_OUT = re.compile(r"(?:^|\.)(?:self_attn|attn|attention|self_attention)\.(?:o_proj|out_proj|c_proj|dense)$")
MLP_OUT = re.compile(r"(?:^|\.)(?:mlp|feed_forward|ffn)\.(?:down_proj|fc2|c_proj|dense_4h_to_h|w2)$")
_PLACES = {"houlsby": ("attention", "mlp"), "pfeiffer": ("mlp",), "attention": ("attention",)}


def sites(module_names: list[str], placement: str) -> dict[str, list[str]]:
    found = {"attention": [n for n in module_names if ATTN_OUT.search(n)],
             "mlp": [n for n in module_names if MLP_OUT.search(n)]}
    return {k: found[k] for k in _PLACES[placement]}


def _sites_or_fail(module_names: list[str], placement: str, model_type: str) -> list[str]:
    found = sites(module_names, placement)
    missing = [k for k, v in found.items() if not v]
    if missing:
        usable = [p for p in _PLACES if all(sites(module_names, p).values())]
        what = " and ".join(f"the {k} output projection" for k in missing)
        raise ConfigError("method.placement", f"bottleneck adapters at {placement!r} need {what} of each "
                          f"layer, which this {model_type} model lacks (looked for o_proj/out_proj/c_proj/"
                          "dense after attention, down_proj/fc2/c_proj/dense_4h_to_h in the MLP)", placement,
                          choices=usable or None)
    return [n for group in found.values() for n in group]


def _adapter_class():
    import torch
    from torch import nn

    acts = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}

    class BottleneckAdapter(nn.Module):
        def __init__(self, dim: int, params, device=None):
            super().__init__()
            hidden = max(1, dim // params.reduction_factor)
            # fp32 adapter weights even on a bf16/4-bit base (as peft does), cast at the boundary.
            self.down = nn.Linear(dim, hidden, device=device, dtype=torch.float32)
            self.up = nn.Linear(hidden, dim, device=device, dtype=torch.float32)
            self.act = acts[params.nonlinearity]()
            self.drop = nn.Dropout(params.dropout)
            self.scaling = float(params.scaling)
            self.enabled = True  # False bypasses it (see disabled())
            if device is None or str(device) != "meta":
                nn.init.zeros_(self.up.weight)  # starts as the identity: training begins at the base model
                nn.init.zeros_(self.up.bias)

        def forward(self, h):
            delta = self.up(self.drop(self.act(self.down(h.to(self.down.weight.dtype)))))
            return h + (self.scaling * delta).to(h.dtype)

    return BottleneckAdapter


def _apply_hook(module, args, output):
    adapter = getattr(module, CHILD)
    return adapter(output) if adapter.enabled else output


@contextmanager
def disabled(model):
    """Bypass every bottleneck adapter of ``model`` (the playground's base side)."""
    adapters = [m for n, m in model.named_modules() if n.endswith(CHILD)]
    for a in adapters:
        a.enabled = False
    try:
        yield model
    finally:
        for a in adapters:
            a.enabled = True


def _out_features(module) -> int:
    for attr in ("out_features", "nf"):  # nn.Linear / bnb layers; GPT-2's Conv1D
        if getattr(module, attr, None):
            return int(getattr(module, attr))
    raise ConfigError("method.placement", f"cannot tell the width of {type(module).__name__}")


def attach(model, params, targets: list[str]):
    """Insert adapters after ``targets``; freeze everything else. Returns the same model."""
    adapter_cls = _adapter_class()
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    for name in targets:
        mod = modules[name]
        weight = next(mod.parameters(), None)
        mod.add_module(CHILD, adapter_cls(_out_features(mod), params,
                                          device=weight.device if weight is not None else None))
        mod.register_forward_hook(_apply_hook)
    model.studio_method = {"name": "bottleneck", "params": asdict(params), "targets": list(targets)}
    return model


def build(model, cfg, ctx):
    if ctx.quantized:
        model = prepare_quantized(model, ctx)
    names = [n for n, _ in model.named_modules() if n]
    targets = _sites_or_fail(names, cfg.method.placement, ctx.model_type)
    return attach(model, cfg.method, targets)


def check(cfg, ctx):
    _sites_or_fail(ctx.module_names, cfg.method.placement, ctx.model_type)


def save(model, directory):
    info = model.studio_method
    tensors = {n: p for n, p in model.named_parameters() if f".{CHILD}." in n}
    store.write_tensors(directory, "bottleneck", info["params"], tensors, store.base_name(model),
                        extra={"targets": info["targets"]})


def load(base_model, directory):
    meta = store.read_meta(directory)
    known = {f.name for f in fields(BottleneckParams)}
    params = BottleneckParams(**{k: v for k, v in meta["params"].items() if k in known})
    attach(base_model, params, meta["targets"])
    store.restore_tensors(base_model, store.read_tensors(directory), directory)
    for p in base_model.parameters():
        p.requires_grad_(False)
    return base_model


register(MethodSpec(
    name="bottleneck", title="Bottleneck adapters", family="adapter", params=BottleneckParams, build=build,
    can_merge=False, check=check, save=save, load=load, disable=disabled, saved_as="modules", suggested_lr=1e-3,
    merge_note="the adapter has a nonlinearity, so it cannot be folded into the base weights; ship the "
               "adapter with the base model",
    description="Houlsby/Pfeiffer adapters: a small down-projection → nonlinearity → up-projection with a "
                "residual after attention and/or the MLP of every layer."))
