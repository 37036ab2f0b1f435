"""IA³: learned rescaling vectors for keys, values and MLP activations (peft's IA3Config)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.fields import F
from engine.methods.apply import prepare_quantized
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field
from engine.methods.targets import ia3_targets, resolve_targets


@dataclass
class IA3Params(MethodParams):
    """IA³: learned vectors that rescale keys, values and the MLP's activations."""

    name: str = name_field("ia3")

    target_modules: list | str = F("auto", "Modules whose activations are rescaled: `auto` (k, v and the "
                                   "MLP down projection for the architecture) or a list of names.")
    feedforward_modules: list | str = F("auto", "Which of target_modules are MLP layers (their input is "
                                        "scaled, not their output). `auto` detects them.", advanced=True)


def _targets(cfg, ctx):
    m = cfg.method
    if m.target_modules == "auto":
        try:
            targets, ff = ia3_targets(ctx.model_type, ctx.linear_names)
        except ValueError as e:
            raise ConfigError("method.target_modules", str(e)) from None
    else:
        targets = resolve_targets(m.target_modules, ctx)
        if targets == "all-linear":
            targets = list(ctx.linear_names)
        ff = [t for t in targets if any(k in t for k in ("down", "fc2", "4h_to_h", "mlp"))]
    if m.feedforward_modules != "auto":
        ff = list(m.feedforward_modules)
        bad = [f for f in ff if f not in targets]
        if bad:
            raise ConfigError("method.feedforward_modules", "must be a subset of target_modules", bad,
                              choices=targets)
    return targets, ff


def build(model, cfg, ctx):
    from peft import IA3Config, TaskType, get_peft_model

    targets, ff = _targets(cfg, ctx)
    model = prepare_quantized(model, ctx)
    return get_peft_model(model, IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets,
                                           feedforward_modules=ff))


def check(cfg, ctx):
    _targets(cfg, ctx)


register(MethodSpec(
    name="ia3", title="IA³", family="ia3", params=IA3Params, build=build, can_merge=True, check=check,
    preflight_build=True, suggested_lr=1e-2,
    auto_targets=lambda ctx: ia3_targets(ctx.model_type, ctx.linear_names)[0],
    description="Learned vectors that rescale the keys, the values and the MLP's inner activations "
                "(one vector per adapted module): well under 0.1% of the model, about 1/80 of LoRA at "
                "r=16 (LN tuning, short soft prompts, TinyLoRA and Uni-LoRA can train fewer still). "
                "Mergeable; needs a higher learning rate (~1e-2)."))
