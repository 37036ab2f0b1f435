"""Preference tuning (``train.task`` dpo, orpo, kto, simpo) on TRL's trainers.

The losses are TRL's (1.16): ``trl.DPOTrainer`` and ``trl.KTOTrainer`` (stable API), ORPO and
CPO (SimPO is CPO with ``loss_type="simpo"``) from ``trl.experimental``. What is ours is the same
wiring as SFT (engine/training/trainer.py): the run's method applied by ``prepare_for_training``
(every PEFT method that trains through the normal forward), our events, the stop flag,
checkpoints and resume, methods that save themselves, the warmup in steps.

The reference model (DPO, KTO) is the base with the adapter disabled, never a second copy of the
weights: TRL 1.16, given a ``PeftModel`` and no ``ref_model``, adds a ``ref`` adapter copied from
the trained one; it is removed again here, so that TRL falls back to ``use_adapter(model,
None)`` (the adapter disabled). A run that continues a saved adapter (``method.from_adapter``,
engine/training/from_adapter.py) keeps TRL's ``ref`` copy: its reference is the starting policy
(the SFT model), which is what TRL's own "DPO with PEFT" recipe does — a frozen copy of the
adapter, not of the base weights. Methods that are not peft tuners (BitFit, selective, full,
bottleneck) change or extend the base itself, so no adapter can be switched off: their reference
log-probabilities are computed once before the first step (``precompute_ref_log_probs``), from
the model as it starts, instead of loading a second copy (which TRL would otherwise do).
"""

from __future__ import annotations

from engine.errors import ConfigError
from engine.tasks import get_task

# task → (module, config class, trainer class); ORPO and CPO live in trl.experimental in TRL 1.x.
TRL_TRAINERS = {
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "kto": ("trl", "KTOConfig", "KTOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
    "simpo": ("trl.experimental.cpo", "CPOConfig", "CPOTrainer"),
}


def check_task(cfg, spec) -> None:
    """Refuse, before any weights load, a method that cannot serve ``cfg.train.task``; raises
    ConfigError naming the field and the reason. ``spec``: the run's MethodSpec."""
    task = get_task(cfg.train.task)
    if not task.is_preference:
        return
    if spec.prompt is not None and not task.virtual_tokens:
        raise ConfigError("method.name", f"{spec.title} cannot train {task.title}: it puts virtual tokens "
                          f"(or a key/value prefix) in front of every sequence, and TRL's {task.title} trainer "
                          "compares the model's output with the answers position by position, which these extra "
                          "positions shift. Choose a method that trains through the normal forward (lora, dora, "
                          "ia3, …), or train.task dpo or kto (their trainers skip the virtual positions)",
                          spec.name)
    if spec.head(cfg.method) == "wrapped":
        raise ConfigError("method.target_modules", f"{task.title} computes the answers' log-probabilities from "
                          "the output head's own weight (TRL's fused head), so an adapter on the head (or a "
                          "trained copy of it in modules_to_save) would be bypassed and never trained. Leave "
                          "lm_head out of method.target_modules and method.modules_to_save")
    if cfg.train.distributed.strategy not in ("single", "ddp"):
        raise ConfigError("train.distributed.strategy", f"{task.title} runs in one process or with DDP here: the "
                          "reference log-probabilities come from the policy with its adapter disabled, which "
                          "FSDP and DeepSpeed shard; use strategy single or ddp",
                          cfg.train.distributed.strategy)


def trl_config(cfg, base_kwargs: dict, is_peft: bool):
    """TRL's config (a TrainingArguments subclass) for ``cfg``: the run's own arguments
    (engine.training.arguments.training_kwargs) plus the task's options in TRL's names."""
    import importlib

    task = get_task(cfg.train.task)
    module, config_name, _ = TRL_TRAINERS[task.name]
    config_cls = getattr(importlib.import_module(module), config_name)
    p = cfg.train.preference
    kw = dict(base_kwargs)
    # TRL's trainers pick their own columns; ours keep every column for the SFT collator.
    kw.pop("remove_unused_columns", None)
    kw.pop("label_names", None)
    # Gradient checkpointing is the method's to set (engine.methods.apply), as for SFT; TRL's
    # configs default it to True (transformers 5 names it activation_checkpointing).
    kw["activation_checkpointing"] = False
    kw["max_length"] = cfg.data.max_length
    kw["beta"] = p.beta
    if task.name == "kto":
        kw.pop("train_sampling_strategy", None)  # KTO's KL term needs its sequential order
    else:
        kw["train_sampling_strategy"] = "random"  # length grouping reads SFT's token lengths
    if task.name == "dpo":
        losses = [p.loss_type if p.loss_type != "default" else task.loss_types[0]]
        if p.rpo_alpha > 0:  # RPO: TRL combines the losses by loss_weights
            kw.update(loss_weights=[1.0, p.rpo_alpha])
            losses.append("sft")
        kw.update(loss_type=losses,
                  label_smoothing=p.label_smoothing,
                  precompute_ref_log_probs=p.precompute_ref_log_probs or not is_peft)
    elif task.name == "kto":
        kw.update(loss_type=p.loss_type if p.loss_type != "default" else task.loss_types[0],
                  desirable_weight=p.desirable_weight, undesirable_weight=p.undesirable_weight,
                  precompute_ref_log_probs=p.precompute_ref_log_probs or not is_peft)
    if task.name in ("orpo", "simpo"):
        # Their collator (DPODataCollatorWithPadding) reads the tokenized columns it finds and needs
        # the others kept, as TRL's message says.
        kw["remove_unused_columns"] = False
    if task.name == "simpo":
        kw.update(loss_type="simpo", simpo_gamma=p.simpo_gamma, cpo_alpha=p.cpo_alpha,
                  label_smoothing=p.label_smoothing)
    return config_cls(**kw)


def _is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def make_preference_trainer(p, base_kwargs: dict, callbacks: list, optimizers, counters: dict, mixin_cls):
    """The TRL trainer for the prepared run ``p`` (engine.training.run.Prepared, whose ``data`` is
    an engine.data.preference.PreferenceData), with our behaviour (``mixin_cls``:
    engine.training.trainer.studio_mixin()) on top of TRL's class."""
    import importlib

    cfg = p.cfg
    task = get_task(cfg.train.task)
    module, _, trainer_name = TRL_TRAINERS[task.name]
    base = getattr(importlib.import_module(module), trainer_name)
    model = p.built.model
    is_peft = _is_peft(model)
    args = trl_config(cfg, base_kwargs, is_peft)
    had_ref = is_peft and "ref" in model.peft_config

    class StudioPreferenceTrainer(mixin_cls, base):
        """TRL's trainer for the task, with the project's token counting, saving and schedule."""

    StudioPreferenceTrainer.__name__ = f"Studio{trainer_name}"
    StudioPreferenceTrainer.counters = counters
    StudioPreferenceTrainer.method_spec = p.spec
    StudioPreferenceTrainer.warmup_ratio = cfg.train.warmup_ratio
    from engine.data.pipeline import _quiet_datasets

    with _quiet_datasets():  # TRL tokenizes here; our log lines report the data instead of bars
        trainer = StudioPreferenceTrainer(
            model=model, args=args, train_dataset=p.data.train, eval_dataset=p.data.eval,
            processing_class=p.tokenizer, callbacks=callbacks, optimizers=optimizers)
    if is_peft and not had_ref and "ref" in model.peft_config and not cfg.method.from_adapter:
        # The reference is the base with the adapter disabled (module docstring): without a "ref"
        # adapter TRL computes it under use_adapter(model, None).
        model.delete_adapter("ref")
    return trainer


def reference_note(cfg, model) -> str | None:
    """What the run's reference model is, for its log (None for reference-free tasks)."""
    task = get_task(cfg.train.task)
    if not task.reference:
        return None
    if _is_peft(model) and "ref" in model.peft_config:
        return (f"Reference model: the starting policy, a frozen copy of the adapter {cfg.method.from_adapter} "
                "(TRL's `ref` adapter), not the base")
    return None
