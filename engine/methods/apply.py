"""Putting a method on a model: checks before any weights load, then the build.

``preflight(cfg)`` checks everything config files can tell (the method against the architecture
and the quantization, bad target names) on a meta-device model in seconds;
``prepare_for_training`` readies a loaded base the one way the trainer, the time probe and the
VRAM harness share; ``apply_method`` wraps any model (meta-device models too: the estimator
counts parameters that way).
"""

from __future__ import annotations

import dataclasses

from engine.errors import ConfigError
from engine.methods.registry import get_method
from engine.methods.spec import BuildContext
from engine.models import check_bitsandbytes, linear_module_names, resolve_model_config


def context_for(model, cfg, tokenizer_path: str | None = None) -> BuildContext:
    """What a build may know about ``model`` (names only, no weights read)."""
    quantized = bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))
    return BuildContext(model_type=model.config.model_type, linear_names=linear_module_names(model),
                        tokenizer_path=tokenizer_path, gradient_checkpointing=cfg.train.gradient_checkpointing,
                        quantized=quantized, param_names=[n for n, _ in model.named_parameters()],
                        module_names=[n for n, _ in model.named_modules() if n])


def effective_quantization(cfg) -> str | None:
    """How the base is stored for this run: model.quantization, or what the method needs (qlora)."""
    spec = get_method(cfg.method.name)
    return cfg.model.quantization or spec.needs_quantization


NO_BIAS = ("this model has no bias parameters; choose another method (e.g. beft, which adds trainable "
           "biases to bias-free models)")


def _yaml(value) -> str:
    return {True: "true", False: "false", None: "null"}.get(value, str(value)) if not isinstance(value, (int, float)) \
        or isinstance(value, bool) else str(value)


def check_options(cfg, device: str | None = None) -> None:
    """Refuse a run-file option the method declares it cannot work with (``MethodSpec.incompatible``
    and what its capabilities imply), naming both fields and what to choose instead. Reads the run
    file only: call it before any data or weights load. ``device``: ``cpu`` or ``cuda`` (default:
    where training would run)."""
    spec = get_method(cfg.method.name)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    for inc in spec.incompatibilities():
        if inc.applies(cfg, device):
            section, name = inc.field.split(".", 1)
            value = getattr(getattr(cfg, section), name)
            where = f" on the {device.upper() if device == 'cpu' else 'GPU'}" if inc.device else ""
            raise ConfigError(inc.field, f"{spec.title} (method.name: {spec.name}) cannot work with {inc.field}: "
                              f"{_yaml(value)}{where}: {inc.why}. Choose {inc.instead}.")


def check_compatible(cfg, ctx: BuildContext) -> None:
    """Reject a method/architecture/quantization combination before any weights load."""
    spec = get_method(cfg.method.name)
    quant = effective_quantization(cfg)
    check_options(cfg)
    if quant:
        reason = check_bitsandbytes()
        if reason:
            what = f"{spec.name} needs a 4-bit base" if spec.needs_quantization else f"model.quantization={quant}"
            raise ConfigError("method.name" if spec.needs_quantization else "model.quantization",
                              f"{what}, but {reason} Or choose lora/dora on an unquantized base.")
    if spec.needs_biases and not any(n.endswith(".bias") for n in ctx.param_names):
        raise ConfigError("method.name", NO_BIAS.replace("this model", f"this model ({ctx.model_type})"), spec.name)
    if spec.check:
        spec.check(cfg, ctx)


def prepare_quantized(model, ctx: BuildContext):
    """peft's k-bit preparation: norms to fp32, input grads on, checkpointing without the
    re-entrant variant (the re-entrant one loses gradients when only adapters train)."""
    if not ctx.quantized or getattr(model, "device", None) is not None and str(model.device) == "meta":
        return model
    if _sharded_4bit(model):
        # FSDP-QLoRA: the 4-bit weights are stored in the compute dtype so that FSDP can flatten
        # them with the norms beside them; k-bit preparation would cast those norms to fp32 and
        # break the one-dtype-per-unit rule (TRL skips it for "sharded QLoRA" the same way).
        if ctx.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=ctx.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False})


def _sharded_4bit(model) -> bool:
    """A 4-bit base whose packed weights are stored in a floating dtype (bnb_4bit_quant_storage):
    loaded for FSDP (engine.models.loading ``sharded``)."""
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    storage = qc.get("bnb_4bit_quant_storage") if isinstance(qc, dict) else getattr(qc, "bnb_4bit_quant_storage", None)
    return bool(getattr(model, "is_loaded_in_4bit", False)) and str(storage or "uint8") not in ("uint8", "torch.uint8")


def apply_method(model, cfg, tokenizer_path: str | None = None):
    """Wrap ``model`` with the configured method; only the method's parameters stay trainable.
    Works on meta-device models too (the estimator counts parameters that way)."""
    spec = get_method(cfg.method.name)
    ctx = context_for(model, cfg, tokenizer_path)
    check_compatible(cfg, ctx)
    return spec.build(model, cfg, ctx)


def continue_adapter(model, cfg, tokenizer_path: str | None = None):
    """``model`` with the saved peft adapter ``cfg.method.from_adapter`` loaded trainable
    (``peft.PeftModel.from_pretrained(model, path, is_trainable=True)``, as TRL's "DPO with PEFT"
    recipe loads an SFT adapter), readied as a fresh adapter of the method would be (the method's
    architecture checks, peft's k-bit preparation on a quantized base). The folder, the method
    and the base were checked before (engine.training.from_adapter); an adapter that still does
    not fit the loaded weights is a ConfigError naming method.from_adapter."""
    ctx = context_for(model, cfg, tokenizer_path)
    check_compatible(cfg, ctx)
    model = prepare_quantized(model, ctx)
    from peft import PeftModel

    path = cfg.method.from_adapter
    try:
        return PeftModel.from_pretrained(model, path, is_trainable=True)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("method.from_adapter", f"the adapter in {path} does not fit "
                          f"{cfg.model.name_or_path}: {str(e).splitlines()[0][:300]}") from None


def for_meta(cfg):
    """``cfg`` with the method's parameters as they can be built without weights or a tokenizer
    (``MethodSpec.meta_params``: a soft prompt initialised from text becomes random — the
    shapes are the same)."""
    spec = get_method(cfg.method.name)
    params = spec.meta_params(cfg.method)
    return cfg if params is cfg.method else dataclasses.replace(cfg, method=params)


def prepare_for_training(model, cfg, quantized: bool, tokenizer_path: str | None = None):
    """The one sequence that readies a loaded base for training: no KV cache, gradient
    checkpointing (peft's k-bit preparation does its own for quantized bases), the method (a
    fresh adapter, or the saved one ``method.from_adapter`` names), train mode. Shared by the trainer, the time probe and the VRAM harness so they measure
    what training really runs."""
    model.config.use_cache = False  # the KV cache is useless in training and costs memory
    if cfg.train.gradient_checkpointing and not quantized:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if cfg.method.from_adapter:  # training continues a saved adapter (method.from_adapter)
        model = continue_adapter(model, cfg, tokenizer_path=tokenizer_path)
    else:
        model = apply_method(model, cfg, tokenizer_path=tokenizer_path)
    model.train()
    return model


def meta_model(cfg):
    """The run's model architecture on the meta device (no weights, no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    hf_cfg = resolve_model_config(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_cfg, trust_remote_code=cfg.model.trust_remote_code)


def preflight(cfg) -> BuildContext:
    """Everything that can be checked from config files alone, before weights load."""
    model = meta_model(cfg)
    ctx = context_for(model, cfg)
    ctx.quantized = bool(effective_quantization(cfg))
    check_compatible(cfg, ctx)
    spec = get_method(cfg.method.name)
    if spec.preflight_build:
        # Building on the meta model surfaces bad target names and unsupported layers now.
        try:
            spec.build(model, for_meta(cfg), context_for(model, cfg))
        except ConfigError:
            raise
        except (ValueError, TypeError, NotImplementedError) as e:
            raise ConfigError("method.name", f"{spec.title} cannot be applied to this "
                              f"{ctx.model_type} model: {e}") from None
    return ctx
