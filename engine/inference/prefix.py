"""Virtual tokens and key/value prefixes in generation, with the KV cache.

Prompt tuning and P-tuning put learned embeddings in front of the input; prefix tuning (and
peft's Cartridge) put learned keys and values in front of every attention layer's cache. peft
makes that happen in generation through ``PeftModelForCausalLM.prepare_inputs_for_generation``,
which transformers 5.24 + peft 0.21 break in two ways (the faults users saw in chat):

* transformers now names the cache ``cache`` in the model kwargs (``past_key_values`` is a
  deprecated alias). peft looks for ``past_key_values``, finds none at every step, concludes that
  each decoding step is the prefill, and prepends the soft prompt again to every new token: the
  cache fills with copies of the prompt and the text turns to noise (prompt tuning's
  "BeepolifeHeroDeH…" where full-forward greedy decoding says "Beep. Paris.").
* For prefix tuning peft puts its prefix into ``past_key_values`` while transformers already
  passes an empty ``cache``; the model takes ``cache`` and ignores the prefix, so the answer is
  exactly the base model's.

Training is unaffected (peft's ``forward`` passes the prefix as the only cache). So generation
does what peft's ``forward`` does, once, at the prefill, and leaves the rest to transformers'
own ``generate`` on the base model: the prefix goes in as ``inputs_embeds`` (input kind) or as the
initial ``cache`` (key/value kind), and the attention mask gets ones for the virtual positions so
that position ids (transformers derives them from the mask) are those of training: virtual
tokens at 0…V-1, the prompt from V on — also behind left padding, so a batch answers as single
prompts do.

Which kind a model uses is read from the model itself (what ``get_prompt`` returns), so any peft
prompt-learning tuner works the same way; ``MethodSpec.prompt`` declares the same thing to the
rest of the engine, and the method-matrix test checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

INPUT = "input"
KV_PREFIX = "kv_prefix"


def prompt_learning(model) -> bool:
    """Whether ``model`` is a peft model whose active adapter is prompt learning (adds virtual
    tokens or key/value prefixes in peft's forward)."""
    conf = getattr(model, "active_peft_config", None) if hasattr(model, "peft_config") else None
    return bool(conf is not None and getattr(conf, "is_prompt_learning", False)
                and not getattr(model, "_adapters_disabled", False))


@dataclass
class Prepared:
    """What to call ``generate`` on, with which keyword arguments, and where the answer starts in
    its output rows (``answer_start``: a column index)."""

    generator: object
    kwargs: dict
    answer_start: int
    kind: str | None            # None, INPUT or KV_PREFIX
    virtual_tokens: int = 0


def prefix_kind(model) -> str | None:
    """INPUT, KV_PREFIX or None: how ``model``'s adapter adds its virtual tokens (read from what
    peft's ``get_prompt`` returns for one sequence)."""
    if not prompt_learning(model):
        return None
    import torch

    with torch.no_grad():
        prompt = model.get_prompt(batch_size=1)
    return INPUT if isinstance(prompt, torch.Tensor) else KV_PREFIX


def prepare(model, input_ids, attention_mask) -> Prepared:
    """The call that generates from ``input_ids`` (B×L, left-padded) with ``model``'s virtual
    prefix, if it has one, in place."""
    import torch

    if not prompt_learning(model):
        return Prepared(model, {"input_ids": input_ids, "attention_mask": attention_mask},
                        input_ids.shape[1], None)
    batch = input_ids.shape[0]
    base = model.get_base_model()
    with torch.no_grad():
        prompt = model.get_prompt(batch_size=batch)
    if isinstance(prompt, torch.Tensor):  # virtual input embeddings, B×V×H
        virtual = prompt.shape[1]
        embeds = base.get_input_embeddings()(input_ids)
        embeds = torch.cat((prompt.to(device=embeds.device, dtype=embeds.dtype), embeds), dim=1)
        kwargs = {"inputs_embeds": embeds, "attention_mask": _with_virtual(attention_mask, virtual)}
        # generate() given only embeddings returns only the new tokens.
        return Prepared(base, kwargs, 0, INPUT, virtual)
    cache = _as_cache(prompt, base)
    virtual = cache.get_seq_length()
    kwargs = {"input_ids": input_ids, "attention_mask": _with_virtual(attention_mask, virtual), "cache": cache}
    return Prepared(base, kwargs, input_ids.shape[1], KV_PREFIX, virtual)


def _with_virtual(mask, virtual: int):
    import torch

    ones = torch.ones(mask.shape[0], virtual, dtype=mask.dtype, device=mask.device)
    return torch.cat((ones, mask), dim=1)


def _as_cache(prompt, base):
    """peft returns a transformers Cache (or, from older paths, per-layer (key, value) pairs)."""
    from transformers import Cache, DynamicCache

    if isinstance(prompt, Cache):
        return prompt
    cache = DynamicCache(config=base.config)
    for layer, (key, value) in enumerate(prompt):
        cache.update(key, value, layer)
    return cache
