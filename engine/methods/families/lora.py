"""The LoRA family: lora, qlora (LoRA on a 4-bit NF4 base) and dora, on peft's LoraConfig."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.fields import F
from engine.methods.apply import prepare_quantized
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field
from engine.methods.targets import TARGET_HELP, resolve_targets


@dataclass
class _LoraFields(MethodParams):
    r: int = F(16, "Rank of the low-rank update. Higher learns more, costs more memory.", minimum=1,
               maximum=4096)
    alpha: float = F(32, "Scaling: the update is multiplied by alpha / r (alpha / √r with rsLoRA).",
                     minimum=0.0)
    dropout: float = F(0.05, "Dropout on the adapter's input during training.", minimum=0.0, maximum=0.9)
    target_modules: list | str = F("auto", TARGET_HELP)
    use_rslora: bool = F(False, "Rank-stabilised LoRA: scale by alpha/√r, which keeps high ranks stable.",
                         advanced=True)
    bias: str = F("none", "Also train biases: none, all, or lora_only.", choices=["none", "all", "lora_only"],
                  advanced=True)
    init: str = F("default", "Initialisation of the adapter weights: default (B = 0), gaussian, pissa "
                  "(principal singular vectors), olora.", choices=["default", "gaussian", "pissa", "olora"],
                  advanced=True)
    modules_to_save: list = F(default_factory=list, help="Extra modules trained in full and saved with "
                              "the adapter, e.g. [lm_head, embed_tokens].", advanced=True)


@dataclass
class LoraParams(_LoraFields):
    """LoRA: a trainable low-rank update B·A beside each frozen linear layer."""

    name: str = name_field("lora")


@dataclass
class QLoraParams(_LoraFields):
    """QLoRA: LoRA on a 4-bit NF4-quantized frozen base (bitsandbytes)."""

    name: str = name_field("qlora")


@dataclass
class DoraParams(_LoraFields):
    """DoRA: LoRA with the weight decomposed into magnitude and direction."""

    name: str = name_field("dora")


_INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def _lora_config(cfg, ctx, use_dora: bool):
    from peft import LoraConfig, TaskType

    m = cfg.method
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout,
        target_modules=resolve_targets(m.target_modules, ctx), use_rslora=m.use_rslora, bias=m.bias,
        use_dora=use_dora, init_lora_weights=_INIT[m.init], modules_to_save=list(m.modules_to_save) or None,
    )


def _build(use_dora: bool):
    def build(model, cfg, ctx):
        from peft import get_peft_model

        model = prepare_quantized(model, ctx)
        return get_peft_model(model, _lora_config(cfg, ctx, use_dora))

    return build


def _check(cfg, ctx):
    m = cfg.method
    resolve_targets(m.target_modules, ctx)
    if m.init in ("pissa", "olora") and ctx.quantized:
        raise ConfigError("method.init", f"{m.init} initialisation rewrites the base weights and cannot "
                          "run on a quantized base; use default", m.init)


def _validate_qlora(cfg):
    if cfg.model.quantization not in (None, "nf4", "fp4"):
        raise ConfigError("model.quantization", "qlora trains on a 4-bit base; use nf4 or fp4 (or leave "
                          "it empty for nf4)", cfg.model.quantization, choices=["nf4", "fp4"])


def _dora_transient(params, rows: int, cols: int) -> int:
    """DoRA recomputes its weight norm every forward: an identity of in×in through lora_A, the
    low-rank product and the updated weight, all out×in, in the adapter's fp32."""
    return cols * cols * 4 + 3 * rows * cols * 4


def _dora_suggestions(params) -> list[str]:
    if params.dropout > 0:
        return ["DoRA with dropout keeps an fp32 copy of every adapted weight for backward; "
                "method.dropout: 0 avoids it"]
    return []


_COMMON = dict(family="lora", can_merge=True, check=_check, loraplus=True, preflight_build=True)

register(MethodSpec(
    name="lora", title="LoRA", params=LoraParams, build=_build(False), quantized_variant="qlora", **_COMMON,
    description="Low-rank adapters beside the frozen linear layers. The default: small, fast, mergeable."))
register(MethodSpec(
    name="qlora", title="QLoRA", params=QLoraParams, build=_build(False), needs_quantization="nf4", quantizes="lora",
    validate=_validate_qlora, **_COMMON,
    description="LoRA on a 4-bit NF4 base: about a quarter of the weight memory. Merged into a "
                "full-precision base on export."))
register(MethodSpec(
    name="dora", title="DoRA", params=DoraParams, build=_build(True), quantized_variant="qlora",
    forward_transient=_dora_transient, memory_suggestions=_dora_suggestions, **_COMMON,
    description="Weight-decomposed LoRA: learns magnitude and direction separately; closer to full "
                "fine-tuning at low ranks, somewhat slower."))
