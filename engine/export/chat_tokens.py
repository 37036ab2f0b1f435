"""The tokens that end a turn: what llama.cpp and Ollama must stop on.

"The exported model never stops" is the classic report against GGUF exports: the file names
only one EOS token while the chat template ends assistant turns with another (``<|im_end|>``,
``<|eot_id|>``, ``<end_of_turn>``, ``<|end|>``). The end-of-turn token is read off the template
itself — render an assistant turn and look at the token right after its text — so it holds for
any template, not only the ones we know by name.
"""

from __future__ import annotations

_PROBE = "Zq9 probe answer"


def end_of_turn_token(tokenizer) -> str | None:
    """The special token that closes an assistant turn in the model's chat template, or None.

    Uses ``engine.data.chat_template_for`` (the template the data was rendered with).
    """
    from engine.data import chat_template_for

    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=chat_template_for(tokenizer))
    except Exception:  # a template that refuses this conversation shape: no end-of-turn to read
        return None
    at = text.rfind(_PROBE)
    if at < 0:
        return None
    rest = text[at + len(_PROBE):]
    special = sorted((t for t in _special_texts(tokenizer) if t), key=len, reverse=True)
    stripped = rest.lstrip(" \n")
    for tok in special:
        if stripped.startswith(tok):
            return tok
    return None


def _special_texts(tokenizer) -> set[str]:
    out = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        out.add(str(tok))
    return out


def eos_ids(tokenizer, generation_config=None) -> list[int]:
    """Every id generation should stop on: the tokenizer's EOS, generation_config's EOS
    (an int or a list, as in Llama 3 and Qwen2.5) and the template's end-of-turn token."""
    ids: list[int] = []

    def add(i):
        if isinstance(i, int) and i >= 0 and i not in ids:
            ids.append(i)

    add(getattr(tokenizer, "eos_token_id", None))
    gc_eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    for i in (gc_eos if isinstance(gc_eos, (list, tuple)) else [gc_eos]):
        add(i)
    eot = end_of_turn_token(tokenizer)
    if eot is not None:
        add(tokenizer.convert_tokens_to_ids(eot))
    return ids


def stop_strings(tokenizer, generation_config=None) -> list[str]:
    """The texts of ``eos_ids`` (what an Ollama Modelfile lists as ``PARAMETER stop``)."""
    out = []
    for i in eos_ids(tokenizer, generation_config):
        t = tokenizer.convert_ids_to_tokens(i)
        if t and t not in out:
            out.append(t)
    return out
