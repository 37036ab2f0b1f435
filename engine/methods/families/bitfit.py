"""BitFit: only bias terms train (Ben Zaken et al., 2022).

peft has no BitFit: its nearest tuner, BEFT (registered as `beft`), adds *new* bias vectors to
linear layers, which also works on bias-free models but is a different method. Training the
model's own biases needs no tuner at all, only requires_grad, so this reuses selective
fine-tuning's changed-tensors save/load (engine/methods/storage.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.fields import F
from engine.methods.apply import NO_BIAS, prepare_quantized
from engine.methods.incompatible import NO_FP16_TRAINED_WEIGHTS
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field
from engine.methods.storage import freeze_except, load_changed, merged, save_changed


@dataclass
class BitFitParams(MethodParams):
    """BitFit: train only the bias terms (all of them, or a chosen subset); every weight stays frozen."""

    name: str = name_field("bitfit")

    subset: list | str = F("all", "Which biases train: `all`, or a list of name parts such as "
                           "[q_proj, v_proj] or [mlp] (a bias trains when its name contains one).")


def biases(names: list[str], subset) -> list[str]:
    found = [n for n in names if n.endswith(".bias")]
    if subset == "all":
        return found
    return [n for n in found if any(part in n for part in subset)]


def _chosen(cfg, names: list[str], model_type: str) -> list[str]:
    subset = cfg.method.subset
    if isinstance(subset, str) and subset != "all":
        raise ConfigError("method.subset", "must be `all` or a list of name parts", subset)
    if isinstance(subset, list) and not subset:
        raise ConfigError("method.subset", "the list is empty; name at least one part or use all", subset)
    every = biases(names, "all")
    if not every:
        raise ConfigError("method.name", NO_BIAS.replace("this model", f"this model ({model_type})"), "bitfit")
    chosen = biases(names, subset)
    if not chosen:
        parts = sorted({n.rsplit(".", 2)[-2] for n in every})
        raise ConfigError("method.subset", "matches no bias; this model's biases belong to", subset,
                          choices=parts)
    return chosen


def build(model, cfg, ctx):
    model = prepare_quantized(model, ctx)  # biases stay full precision in bitsandbytes layers
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    freeze_except(model, _chosen(cfg, names, ctx.model_type), "bitfit", cfg.method)
    return model


def check(cfg, ctx):
    _chosen(cfg, ctx.param_names, ctx.model_type)


register(MethodSpec(
    incompatible=(NO_FP16_TRAINED_WEIGHTS,),
    name="bitfit", title="BitFit", family="partial", params=BitFitParams, build=build, can_merge=True,
    check=check, save=save_changed, load=load_changed, merge=merged, needs_biases=True, saved_as="tensors",
    suggested_lr=1e-3,
    description="Trains only the bias terms: tiny, mergeable, and needs a model with biases "
                "(GPT-2, OPT, Qwen2 attention …; not Llama)."))
