"""The method registry: one module per family, each registering a MethodSpec.

Adding a method (checklist):
1. its parameter dataclass in ``params.py`` (fields with help text; the form and run file follow);
2. a ``build(model, cfg, ctx)`` in the family's module that returns the wrapped model with only
   the method's parameters trainable, and ``register(MethodSpec(...))`` there;
3. import the module at the bottom of this file;
4. the parametrized matrix in tests/engine/test_methods.py picks it up by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.config import ConfigError
from engine.methods.params import PARAMS


@dataclass
class BuildContext:
    model_type: str
    linear_names: list[str]
    tokenizer_path: str | None = None
    gradient_checkpointing: bool = False
    quantized: bool = False
    # Full names of the model's parameters and modules, so that check() can reject a method the
    # architecture cannot carry (BitFit without biases, an adapter site that does not exist)
    # from the meta-device model, before any weights load.
    param_names: list[str] = field(default_factory=list)
    module_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    family: str
    build: Callable  # (model, cfg: RunConfig, ctx: BuildContext) -> model
    can_merge: bool
    description: str = ""
    needs_quantization: str | None = None   # qlora: "nf4"
    prompt_based: bool = False              # lengthens every sequence; incompatible with packing
    supports_quantized_base: bool = True
    check: Callable | None = None           # (cfg, ctx) -> None, raises ConfigError
    merge_note: str = ""
    # Methods that are not peft tuners save and load themselves (engine/methods/saved.py).
    # None means peft's: model.save_pretrained / PeftModel.from_pretrained / merge_and_unload.
    save: Callable | None = None            # (model, dir) -> None
    load: Callable | None = None            # (base_model, dir) -> model
    merge: Callable | None = None           # (loaded model) -> plain transformers model
    # (loaded model) -> context manager inside which modules the method added are bypassed, so
    # the playground's base side computes as the base (bottleneck adapters).
    disable: Callable | None = None
    note: str = ""                          # a caveat the studio shows beside the method
    saves_full_model: bool = False          # saves a complete model folder, not an adapter (full)
    target_kind: str = "linear"             # what method.target_modules names (methods/targets.TARGET_KINDS)
    preflight_build: bool = False           # safe to build on the meta model in preflight()

    @property
    def params(self):
        return PARAMS[self.name]

    @property
    def can_shard(self) -> bool:
        """FSDP or DeepSpeed ZeRO may split this method's parameters over processes: true for
        peft tuners, whose adapter rank 0 writes from the gathered trainable tensors. Methods
        that save themselves (``save``) read whole tensors from the model, so they train on one
        process or with DDP (engine.distributed.preflight refuses the rest)."""
        return self.save is None

    def virtual_tokens(self, params) -> int:
        """Extra positions each sequence gets (prompt-based methods); prefix tuning adds them
        as key/value prefixes in every layer rather than input positions."""
        return int(getattr(params, "num_virtual_tokens", 0)) if self.prompt_based else 0


REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    if spec.name not in PARAMS:
        raise ValueError(f"method {spec.name!r} has no parameter class in engine/methods/params.py")
    REGISTRY[spec.name] = spec
    return spec


def registered() -> list[str]:
    return list(REGISTRY)


def get_method(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise ConfigError("method.name", "unknown method", name, choices=sorted(REGISTRY))
    return REGISTRY[name]


def context_for(model, cfg, tokenizer_path: str | None = None) -> BuildContext:
    from engine.models import linear_module_names

    quantized = bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))
    return BuildContext(model_type=model.config.model_type, linear_names=linear_module_names(model),
                        tokenizer_path=tokenizer_path, gradient_checkpointing=cfg.train.gradient_checkpointing,
                        quantized=quantized, param_names=[n for n, _ in model.named_parameters()],
                        module_names=[n for n, _ in model.named_modules() if n])


def check_compatible(cfg, ctx: BuildContext) -> None:
    """Reject a method/architecture/quantization combination before any weights load."""
    spec = get_method(cfg.method.name)
    quant = effective_quantization(cfg)
    if quant and not spec.supports_quantized_base:
        raise ConfigError("model.quantization", f"{spec.title} cannot train on a quantized base; "
                          "clear model.quantization", quant)
    if quant:
        from engine.models import check_bitsandbytes

        reason = check_bitsandbytes()
        if reason:
            what = "qlora needs a 4-bit base" if spec.needs_quantization else f"model.quantization={quant}"
            raise ConfigError("method.name" if spec.needs_quantization else "model.quantization",
                              f"{what}, but {reason} Or choose lora/dora on an unquantized base.")
    if spec.check:
        spec.check(cfg, ctx)


def effective_quantization(cfg) -> str | None:
    spec = get_method(cfg.method.name)
    return cfg.model.quantization or spec.needs_quantization


def resolve_targets(value, ctx: BuildContext, path: str = "method.target_modules") -> list[str] | str:
    from engine.methods.targets import default_targets

    if value == "all-linear":
        return "all-linear"
    if value == "auto":
        try:
            return default_targets(ctx.model_type, ctx.linear_names)
        except ValueError as e:
            raise ConfigError(path, str(e)) from None
    missing = [t for t in value if t not in ctx.linear_names]
    if missing:
        raise ConfigError(path, f"{', '.join(missing)} not found in this {ctx.model_type} model; its linear "
                          "layers are", value, choices=ctx.linear_names)
    return list(value)


def apply_method(model, cfg, tokenizer_path: str | None = None):
    """Wrap ``model`` with the configured method; only the method's parameters stay trainable.
    Works on meta-device models too (the estimator counts parameters that way)."""
    spec = get_method(cfg.method.name)
    ctx = context_for(model, cfg, tokenizer_path)
    check_compatible(cfg, ctx)
    return spec.build(model, cfg, ctx)


def prepare_for_training(model, cfg, quantized: bool, tokenizer_path: str | None = None):
    """The one sequence that readies a loaded base for training: no KV cache, gradient
    checkpointing (peft's k-bit preparation does its own for quantized bases), the method,
    train mode. Shared by the trainer, the time probe and the VRAM harness so they measure
    what training really runs."""
    model.config.use_cache = False  # the KV cache is useless in training and costs memory
    if cfg.train.gradient_checkpointing and not quantized:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = apply_method(model, cfg, tokenizer_path=tokenizer_path)
    model.train()
    return model


def preflight(cfg) -> BuildContext:
    """Everything that can be checked from config files alone, before weights load."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models import resolve_model_config

    hf_cfg = resolve_model_config(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_cfg, trust_remote_code=cfg.model.trust_remote_code)
    ctx = context_for(model, cfg)
    ctx.quantized = bool(effective_quantization(cfg))
    check_compatible(cfg, ctx)
    spec = get_method(cfg.method.name)
    if spec.prompt_based or spec.preflight_build or cfg.method.name in ("lora", "qlora", "dora", "ia3"):
        # Building on the meta model surfaces bad target names and unsupported layers now.
        ctx_meta = context_for(model, cfg)
        if spec.name != "prompt_tuning" or cfg.method.init != "text":
            try:
                spec.build(model, cfg, ctx_meta)
            except ConfigError:
                raise
            except (ValueError, TypeError, NotImplementedError) as e:
                raise ConfigError("method.name", f"{spec.title} cannot be applied to this "
                                  f"{ctx.model_type} model: {e}") from None
    return ctx


def unavailable_methods(model) -> dict[str, str]:
    """Methods that cannot work with ``model``'s architecture (a meta-device model will do), each
    with the reason, for the studio to mark before the user picks one: BitFit without biases,
    adaption prompt on a family it does not know, a tuner whose package is missing. Only errors
    about the method itself count; fields the user still has to fill in (token ids) do not."""
    from engine.config import RunConfig

    ctx = context_for(model, RunConfig())
    out = {}
    for name, spec in REGISTRY.items():
        if spec.check is None:
            continue
        try:
            spec.check(RunConfig.from_dict({"method": {"name": name}}), ctx)
        except ConfigError as e:
            if e.path == "method.name":
                out[name] = e.message
    return out


def count_params(cfg) -> dict:
    """Total and trainable parameters and the adapter size, from config files only."""
    try:
        from engine.estimate.counts import count_params as _count
    except ImportError:
        _count = None
    if _count is not None:
        return _count(cfg)
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models import count_parameters, resolve_model_config

    hf_cfg = resolve_model_config(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_cfg)
        total = count_parameters(model)
        wrapped = apply_method(model, cfg)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    adapter_bytes = sum(p.numel() * p.element_size() for p in wrapped.parameters() if p.requires_grad)
    return {"total_params": total, "trainable_params": trainable, "adapter_bytes": adapter_bytes}


# Family modules register themselves on import.
from engine.methods import bitfit, bottleneck, full, ia3, lora, peft_auto, prompt, selective  # noqa: E402,F401
