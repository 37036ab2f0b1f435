"""Prompt-based methods: prompt tuning, P-tuning and prefix tuning.

They prepend learned virtual tokens (or key/value prefixes), so they cannot be merged into the
base weights and cannot share a packed row between examples.
"""

from __future__ import annotations

from engine.methods import MethodSpec, register


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

register(MethodSpec(
    name="prompt_tuning", title="Prompt tuning", family="prompt", build=_prompt_tuning, can_merge=False,
    prompt_based=True, merge_note=_NO_MERGE,
    description="Learns only a soft prompt of virtual-token embeddings; tiny adapters, best on larger "
                "models."))
register(MethodSpec(
    name="p_tuning", title="P-tuning", family="prompt", build=_p_tuning, can_merge=False, prompt_based=True,
    merge_note=_NO_MERGE,
    description="Virtual tokens produced by a small trainable encoder (MLP/LSTM)."))
register(MethodSpec(
    name="prefix_tuning", title="Prefix tuning", family="prompt", build=_prefix_tuning, can_merge=False,
    prompt_based=True, merge_note=_NO_MERGE,
    description="Learned key/value prefixes in every attention layer."))
