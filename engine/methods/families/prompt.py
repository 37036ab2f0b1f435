"""Prompt-based methods: prompt tuning, P-tuning and prefix tuning (peft's prompt learning).

They prepend learned virtual tokens to the input (prompt and P-tuning) or learned key/value
prefixes to every attention layer (prefix tuning), so they cannot be merged into the base
weights and cannot share a packed row between examples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.fields import F
from engine.methods.incompatible import NO_CHECKPOINTING
from engine.methods.registry import register
from engine.methods.spec import MethodParams, MethodSpec, name_field


@dataclass
class _PromptFields(MethodParams):
    num_virtual_tokens: int = F(20, "Number of learned virtual tokens prepended to every sequence.",
                                minimum=1, maximum=1024)


@dataclass
class PromptTuningParams(_PromptFields):
    """Prompt tuning: learned soft-prompt embeddings prepended to the input."""

    name: str = name_field("prompt_tuning")

    init: str = F("text", "Initialise the soft prompt from the embeddings of `init_text`, or randomly.",
                  choices=["text", "random"])
    init_text: str = F("Answer the question in the style of the examples.",
                       "Text whose token embeddings initialise the soft prompt (when init is text).")


@dataclass
class PTuningParams(_PromptFields):
    """P-tuning: virtual tokens produced by a small trainable prompt encoder (MLP or LSTM)."""

    name: str = name_field("p_tuning")

    encoder_type: str = F("MLP", "The prompt encoder.", choices=["MLP", "LSTM"])
    encoder_hidden_size: int = F(128, "Hidden size of the prompt encoder.", minimum=1)


@dataclass
class PrefixTuningParams(_PromptFields):
    """Prefix tuning: learned key/value prefixes in every attention layer."""

    name: str = name_field("prefix_tuning")

    prefix_projection: bool = F(False, "Produce the prefixes through a two-layer MLP (reparameterisation).")
    encoder_hidden_size: int = F(256, "Hidden size of that MLP.", minimum=1, advanced=True)


def _prompt_tuning(model, cfg, ctx):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    m = cfg.method
    kwargs = {}
    if m.init == "text" and ctx.tokenizer_path:
        kwargs = dict(prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=m.init_text,
                      tokenizer_name_or_path=ctx.tokenizer_path)
    else:
        kwargs = dict(prompt_tuning_init=PromptTuningInit.RANDOM)
    return get_peft_model(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                    num_virtual_tokens=m.num_virtual_tokens, **kwargs))


def _validate_prompt_tuning(cfg):
    m = cfg.method
    if m.init == "text" and not m.init_text.strip():
        raise ConfigError("method.init_text", "is empty; give a text or set method.init to random")


def _random_init(params):
    """Text initialisation needs the tokenizer; the parameter shapes are the same either way."""
    return dataclasses.replace(params, init="random") if params.init == "text" else params


def _p_tuning(model, cfg, ctx):
    from peft import PromptEncoderConfig, TaskType, get_peft_model

    m = cfg.method
    return get_peft_model(model, PromptEncoderConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=m.num_virtual_tokens,
        encoder_reparameterization_type=m.encoder_type, encoder_hidden_size=m.encoder_hidden_size))


def _prefix_tuning(model, cfg, ctx):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    m = cfg.method
    return get_peft_model(model, PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=m.num_virtual_tokens,
        prefix_projection=m.prefix_projection, encoder_hidden_size=m.encoder_hidden_size))


_NO_MERGE = "prompt-based methods add virtual tokens instead of changing weights, so there is nothing to merge"
# (A soft prompt's quantized base works in peft in principle, but the prompt then trains against a
# dequantized embedding each step; the supported matrix stays honest rather than guess.)
_COMMON = dict(family="prompt", can_merge=False, can_pack=False, merge_note=_NO_MERGE, preflight_build=True)

register(MethodSpec(
    name="prompt_tuning", title="Prompt tuning", params=PromptTuningParams, build=_prompt_tuning,
    prompt="input", validate=_validate_prompt_tuning, meta_params=_random_init, suggested_lr=3e-2, **_COMMON,
    description="Learns only a soft prompt of virtual-token embeddings; tiny adapters, best on larger "
                "models."))
register(MethodSpec(
    name="p_tuning", title="P-tuning", params=PTuningParams, build=_p_tuning, prompt="input", suggested_lr=1e-2,
    **_COMMON,
    description="Virtual tokens produced by a small trainable encoder (MLP/LSTM)."))
register(MethodSpec(
    name="prefix_tuning", title="Prefix tuning", params=PrefixTuningParams, build=_prefix_tuning,
    prompt="kv_prefix", suggested_lr=1e-2, incompatible=(NO_CHECKPOINTING,), **_COMMON,
    description="Learned key/value prefixes in every attention layer."))
