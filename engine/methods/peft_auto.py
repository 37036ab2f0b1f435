"""The rest of peft: every tuner listed in params_more.PEFT_METHODS becomes a method.

The parameter classes are generated from peft's config dataclasses (params_more/peft_schema);
this module turns a run file's values back into peft's config class and calls get_peft_model.
Saving, loading and merging are peft's own. What differs per tuner is declared on its line in
PEFT_METHODS; the few tuners that need more than a config get a hook below.
"""

from __future__ import annotations

import importlib
import importlib.util
import weakref

from engine.config import ConfigError
from engine.methods import MethodSpec, peft_schema, register, resolve_targets
from engine.methods.params_more import PEFT_METHODS, UNAVAILABLE, PeftMethod, peft_field_names


def peft_config_class(m: PeftMethod):
    return getattr(importlib.import_module(f"peft.tuners.{m.name}.config"), m.config)


def _targets(m: PeftMethod, value, ctx):
    if m.targets == "linear":
        return resolve_targets(value, ctx)
    if value == "auto":
        return None  # peft's default modules for the architecture
    if value == "all-linear":
        raise ConfigError("method.target_modules", f"{m.title} does not adapt linear layers; use auto or a "
                          "list of module names", value)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in ctx.module_names})
    missing = [t for t in value if t not in leaves]
    if missing:
        raise ConfigError("method.target_modules", f"{', '.join(missing)} not found in this {ctx.model_type} "
                          "model", value, choices=leaves)
    return list(value)


def peft_config(m: PeftMethod, cfg, ctx):
    """peft's config object for the run (raises ConfigError naming the field on bad values)."""
    params = cfg.method
    peft_fields = type(params).peft_fields
    kwargs = {"task_type": "CAUSAL_LM"}
    for name in peft_field_names(type(params)):
        value = getattr(params, name)
        if name == "target_modules":
            value = _targets(m, value, ctx)
        elif peft_fields[name].kind in ("list_int", "int_or_list") and value is not None:
            try:  # a run file's lists arrive as text; peft wants ints here
                value = [int(v) for v in value]
            except ValueError:
                raise ConfigError(f"method.{name}", "must be a list of whole numbers", value) from None
        kwargs[name] = value
    _TWEAKS.get(m.name, lambda kw, cfg, ctx: None)(kwargs, cfg, ctx)
    try:
        return peft_config_class(m)(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError("method", f"{m.title}: {e}") from None


# ---- per-tuner needs ----------------------------------------------------------------------

def _adalora(kwargs, cfg, ctx):
    if kwargs.get("total_step") is None:
        if cfg.train.max_steps <= 0:
            raise ConfigError("method.total_step", "AdaLoRA schedules its rank budget over the whole run: set "
                              "train.max_steps or method.total_step")
        kwargs["total_step"] = cfg.train.max_steps


def _trainable_tokens(kwargs, cfg, ctx):
    if not kwargs.get("token_indices"):
        raise ConfigError("method.token_indices", "list the token ids whose embeddings train, e.g. the ids of "
                          "tokens you added to the tokenizer")


def _adaption_prompt(kwargs, cfg, ctx):
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    if ctx.model_type not in TRANSFORMERS_MODEL_CONFIG:
        raise ConfigError("method.name", f"Adaption prompt supports {', '.join(sorted(TRANSFORMERS_MODEL_CONFIG))} "
                          f"models, not {ctx.model_type}", "adaption_prompt")
    layers = {n.split(".layers.")[1].split(".")[0] for n in ctx.module_names if ".layers." in n}
    if layers and kwargs.get("adapter_layers") and kwargs["adapter_layers"] > len(layers):
        raise ConfigError("method.adapter_layers", f"this model has {len(layers)} layers", kwargs["adapter_layers"])


_TWEAKS = {"adalora": _adalora, "trainable_tokens": _trainable_tokens, "adaption_prompt": _adaption_prompt}


def _adalora_schedule(model) -> None:
    """AdaLoRA re-allocates ranks through ``update_and_allocate(step)`` after every optimizer
    step, before the gradients are cleared (peft leaves that call to the training loop). A
    global optimizer post-step hook does it for any loop (our Trainer, a test's own loop) without
    the trainer knowing about AdaLoRA; it is bound to this model's parameters and removes
    itself once the model is gone."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    ref = weakref.ref(model)
    ids = {id(p) for p in model.parameters() if p.requires_grad}
    state = {"step": 0}

    def hook(optimizer, args, kwargs):
        m = ref()
        if m is None:  # removing the hook here would mutate the hook dict mid-iteration
            return
        if not any(id(p) in ids for g in optimizer.param_groups for p in g["params"]):
            return
        state["step"] += 1
        m.base_model.update_and_allocate(state["step"])

    handle = register_optimizer_step_post_hook(hook)
    weakref.finalize(model, handle.remove)  # unhook outside any optimizer step once the model dies


_AFTER = {"adalora": _adalora_schedule}


def _build_for(m: PeftMethod):
    def build(model, cfg, ctx):
        from peft import get_peft_model

        from engine.methods.lora import prepare_quantized

        conf = peft_config(m, cfg, ctx)
        model = prepare_quantized(model, ctx)
        peft_model = get_peft_model(model, conf)
        if m.name in _AFTER and not _on_meta(peft_model):
            _AFTER[m.name](peft_model)
        return peft_model

    return build


def _on_meta(model) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "meta"


def _check_for(m: PeftMethod):
    def check(cfg, ctx):
        if m.requires and importlib.util.find_spec(m.requires) is None:
            raise ConfigError("method.name", f"{m.title} needs the `{m.requires}` package, which is not "
                              f"installed (pip install {'scikit-learn' if m.requires == 'sklearn' else m.requires})",
                              m.name)
        peft_config(m, cfg, ctx)

    return check


for _m in PEFT_METHODS.values():
    if _m.name in UNAVAILABLE:
        continue
    register(MethodSpec(
        name=_m.name, title=_m.title, family="peft", build=_build_for(_m), can_merge=_m.can_merge,
        description=_m.description, prompt_based=_m.prompt_based, check=_check_for(_m),
        supports_quantized_base=_m.quantized if _m.quantized is not None else peft_schema.has_bnb_layer(_m.name),
        merge_note=_m.merge_note, note=_m.note, preflight_build=_m.meta_ok))
