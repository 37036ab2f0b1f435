"""The rest of peft: every tuner listed in ``catalog.PEFT_METHODS`` becomes a registered method.

The parameter classes are generated from peft's config dataclasses (``catalog``/``schema``);
this module turns a run file's values back into peft's config class and calls get_peft_model.
Saving, loading and merging are peft's own. What differs per tuner is declared on its line in
PEFT_METHODS; the few tuners that need more than a config get a hook below.
"""

from __future__ import annotations

import importlib
import importlib.util
import weakref
from pathlib import Path

from engine.errors import ConfigError
from engine.methods.apply import prepare_quantized
from engine.methods.incompatible import NO_CHECKPOINTING, NO_FP16_TRAINED_WEIGHTS
from engine.methods.peft import schema as peft_schema
from engine.methods.peft.catalog import PARAMS, PEFT_METHODS, UNAVAILABLE, PeftMethod, peft_field_names
from engine.methods.peft.meta import standin
from engine.methods.registry import register
from engine.methods.spec import MethodSpec
from engine.methods.targets import resolve_targets


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


class _AdaLoraSchedule:
    """AdaLoRA re-allocates ranks through ``update_and_allocate(step)`` after every optimizer
    step, before the gradients are cleared (peft leaves that call to the training loop). A
    global optimizer post-step hook makes it for any loop (our Trainer, a test's own loop) without
    the loop knowing about AdaLoRA; it is bound to this model's parameters and removes itself once
    the model is gone.

    The step is the budget schedule's clock (warm-up ``tinit``, final phase ``tfinal``, re-allocation
    every ``deltaT``). Under engine.training's Trainer it is the trainer's global step, which a resume
    restores from the checkpoint (see ``trainer_callbacks``); in any other loop, the optimizer steps
    this hook has seen."""

    def __init__(self, model):
        self.ref = weakref.ref(model)
        self.ids = {id(p) for p in model.parameters() if p.requires_grad}
        self.step = 0                 # the last step passed to update_and_allocate
        self.trainer_state = None     # transformers' TrainerState while a Trainer trains the model

    def __call__(self, optimizer, args, kwargs):
        m = self.ref()
        if m is None:  # removing the hook here would mutate the hook dict mid-iteration
            return
        if not any(id(p) in self.ids for g in optimizer.param_groups for p in g["params"]):
            return
        # Inside optimizer.step() the trainer has not yet counted this step: it is global_step + 1.
        self.step = self.trainer_state.global_step + 1 if self.trainer_state is not None else self.step + 1
        m.base_model.update_and_allocate(self.step)


_SCHEDULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # peft model -> its schedule


def _adalora_schedule(model) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    schedule = _SCHEDULES[model] = _AdaLoraSchedule(model)
    handle = register_optimizer_step_post_hook(schedule)
    weakref.finalize(model, handle.remove)  # unhook outside any optimizer step once the model dies


ADALORA_STATE = "adalora_schedule.pt"  # in a checkpoint: the rank pattern and importance scores so far


def trainer_callbacks(model, resume_from: str | None = None) -> list:
    """transformers TrainerCallbacks that ``model``'s method needs from engine.training's Trainer
    (``MethodSpec.trainer_callbacks`` of every peft tuner).

    AdaLoRA, so that a run resumed from a checkpoint continues its rank budget where it stopped:
    the schedule follows the trainer's global step (restored from the checkpoint) rather than a
    count restarted at 1; and checkpoints keep what peft's adapter file cannot give back. peft
    saves an AdaLoRA adapter cut down to its rank pattern, which the trainer cannot load into the
    full-rank model it resumes, and it never saves the importance scores the allocation is made
    from. A checkpoint therefore holds the full-rank adapter (the pruned triplets are zero, so it
    computes the same) and, beside it, the rank pattern and the scores (``ADALORA_STATE``)."""
    schedule = _SCHEDULES.get(model)
    if schedule is None:
        return []
    from transformers import TrainerCallback

    tuner = model.base_model
    conf = model.peft_config[tuner.trainable_adapter_name]
    unset = object()

    class AdaLoraStep(TrainerCallback):
        pattern = unset  # the rank pattern, set aside while a checkpoint is written

        def on_train_begin(self, args, state, control, **kw):
            schedule.trainer_state = state
            schedule.step = state.global_step
            if resume_from and (Path(resume_from) / ADALORA_STATE).exists():
                _load_adalora_state(tuner, conf, Path(resume_from) / ADALORA_STATE)

        def on_step_end(self, args, state, control, **kw):
            if control.should_save:  # (the last callback: every other has had its say)
                self.pattern, conf.rank_pattern = conf.rank_pattern, None

        def on_save(self, args, state, control, **kw):
            if self.pattern is unset:
                return
            conf.rank_pattern, self.pattern = self.pattern, unset
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if args.should_save and checkpoint.is_dir():
                _save_adalora_state(tuner, conf, checkpoint / ADALORA_STATE)

        def on_train_end(self, args, state, control, **kw):
            schedule.trainer_state = None

    return [AdaLoraStep()]


def _save_adalora_state(tuner, conf, path: Path) -> None:
    import torch

    alloc = tuner.rankallocator
    torch.save({"rank_pattern": conf.rank_pattern, "ipt": alloc.ipt, "exp_avg_ipt": alloc.exp_avg_ipt,
                "exp_avg_unc": alloc.exp_avg_unc}, path)


def _load_adalora_state(tuner, conf, path: Path) -> None:
    import torch

    device = next(p.device for p in tuner.parameters() if p.requires_grad)
    state = torch.load(path, map_location=device, weights_only=True)
    conf.rank_pattern = state["rank_pattern"]
    alloc = tuner.rankallocator
    alloc.ipt, alloc.exp_avg_ipt, alloc.exp_avg_unc = state["ipt"], state["exp_avg_ipt"], state["exp_avg_unc"]


_AFTER = {"adalora": _adalora_schedule}


def _build_for(m: PeftMethod):
    def build(model, cfg, ctx):
        from peft import get_peft_model

        conf = peft_config(m, cfg, ctx)
        model = prepare_quantized(model, ctx)
        with standin(m.name, m.title, conf, model):  # tuners that read the weights, on a meta model
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
            dist = {"sklearn": "scikit-learn"}.get(m.requires, m.requires)  # what pip calls it
            raise ConfigError("method.name", f"{m.title} needs the `{dist}` package, which is not installed "
                              f"(pip install {dist})", m.name)
        peft_config(m, cfg, ctx)

    return check


for _m in PEFT_METHODS.values():
    if _m.name in UNAVAILABLE:
        continue
    register(MethodSpec(
        name=_m.name, title=_m.title, family="peft", params=PARAMS[_m.name], build=_build_for(_m),
        can_merge=_m.can_merge, description=_m.description, prompt=_m.prompt, can_pack=_m.prompt is None,
        check=_check_for(_m),
        supports_quantized_base=_m.quantized if _m.quantized is not None else peft_schema.has_bnb_layer(_m.name),
        merge_note=_m.merge_note, note=_m.note, preflight_build=_m.meta_ok, suggested_lr=_m.lr,
        trainer_callbacks=trainer_callbacks, target_kind=_m.targets if _m.targets != "none" else "linear",
        cached_generation=not _m.generation_note, generation_note=_m.generation_note,
        incompatible=((NO_CHECKPOINTING,) if _m.no_checkpointing else ())
        + ((NO_FP16_TRAINED_WEIGHTS,) if _m.fp16_fails else ())))
