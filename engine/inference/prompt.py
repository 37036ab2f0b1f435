"""The prompt and the stop tokens, shared by the generation path and its reference."""

from __future__ import annotations

from engine.data import chat_template_for


def build_prompt(tokenizer, messages: list[dict]) -> str:
    """``messages`` (role/content dicts) rendered with the chat template the data was rendered
    with (the tokenizer's own, or the ChatML default), ending with the assistant's turn opened."""
    template = chat_template_for(tokenizer)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         chat_template=template)


def encode(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt's token ids (the template carries its own special tokens: none are added)."""
    return tokenizer(build_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end an answer: the tokenizer's EOS, the model's generation config's EOS ids
    (Llama 3's end-of-turn is one of them), and ``<|im_end|>`` when the ChatML default template
    ends turns with it (``engine.data.chat_template_for``)."""
    ids: list[int] = []

    def add(value):
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(v, int) and v >= 0 and v not in ids:
                ids.append(v)

    add(tokenizer.eos_token_id)
    gen_cfg = getattr(model, "generation_config", None)
    add(getattr(gen_cfg, "eos_token_id", None))
    if "<|im_end|>" in chat_template_for(tokenizer):
        add(tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None)
    return ids


def decode(tokenizer, ids: list[int], stops: list[int]) -> str:
    """An answer's text: the tokens up to the first stop token, special tokens left out."""
    for i, t in enumerate(ids):
        if t in stops:
            ids = ids[:i]
            break
    return tokenizer.decode(ids, skip_special_tokens=True).strip()
