"""The LoRA family: lora, qlora (LoRA on a 4-bit NF4 base) and dora."""

from __future__ import annotations

from engine.methods import MethodSpec, register, resolve_targets

_INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def _lora_config(cfg, ctx, use_dora: bool):
    from peft import LoraConfig, TaskType

    m = cfg.method
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout,
        target_modules=resolve_targets(m.target_modules, ctx), use_rslora=m.use_rslora, bias=m.bias,
        use_dora=use_dora, init_lora_weights=_INIT[m.init], modules_to_save=list(m.modules_to_save) or None,
    )


def prepare_quantized(model, ctx):
    """peft's k-bit preparation: norms to fp32, input grads on, checkpointing without the
    re-entrant variant (the re-entrant one loses gradients when only adapters train)."""
    if not ctx.quantized or getattr(model, "device", None) is not None and str(model.device) == "meta":
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=ctx.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False})


def _build(use_dora: bool):
    def build(model, cfg, ctx):
        from peft import get_peft_model

        model = prepare_quantized(model, ctx)
        return get_peft_model(model, _lora_config(cfg, ctx, use_dora))

    return build


def _check(cfg, ctx):
    from engine.config import ConfigError

    m = cfg.method
    resolve_targets(m.target_modules, ctx)
    if m.init in ("pissa", "olora") and ctx.quantized:
        raise ConfigError("method.init", f"{m.init} initialisation rewrites the base weights and cannot "
                          "run on a quantized base; use default", m.init)


register(MethodSpec(
    name="lora", title="LoRA", family="lora", build=_build(False), can_merge=True, check=_check,
    description="Low-rank adapters beside the frozen linear layers. The default: small, fast, mergeable."))
register(MethodSpec(
    name="qlora", title="QLoRA", family="lora", build=_build(False), can_merge=True, check=_check,
    needs_quantization="nf4",
    description="LoRA on a 4-bit NF4 base: about a quarter of the weight memory. Merged into a "
                "full-precision base on export."))
register(MethodSpec(
    name="dora", title="DoRA", family="lora", build=_build(True), can_merge=True, check=_check,
    description="Weight-decomposed LoRA: learns magnitude and direction separately; closer to full "
                "fine-tuning at low ranks, somewhat slower."))
