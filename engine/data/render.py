"""Render internal records to text with the chat template and tokenize them with label masks.

A record becomes one text plus the character spans that are trained:

* messages: the whole conversation through the model's chat template (a ChatML default when the
  tokenizer has none). Each assistant turn's span is found by rendering prefix by prefix:
  ``template(messages[:i], add_generation_prompt=True)`` ends where the answer starts and
  ``template(messages[:i+1])`` ends after its end-of-turn token. So the span covers the answer and
  its end-of-turn token (``<|im_end|>``), whatever the template looks like. Whitespace after that
  token (ChatML's newline) is left untrained: generation stops at the token and never produces it.
* prompt/completion: through the chat template as a user/assistant exchange when the tokenizer has
  its own template (an instruct model expects it, and the playground prompts that way); otherwise
  raw ``prompt + completion + eos`` (completion-style training of a base model).
* text: ``text + eos``, all trained.

Tokens are labelled from the fast tokenizer's offsets (a token is trained when its first character
lies in a trained span), so the ids are exactly those of tokenizing the whole text, as at inference.
Slow tokenizers (no offsets) fall back to tokenizing the pieces one after another.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.errors import SKIP_HINT, DataError, Where

_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>")


@dataclass
class Rendered:
    text: str
    spans: list[tuple[int, int]]   # trained character ranges, sorted, non-overlapping
    add_special_tokens: bool       # raw text gets the tokenizer's BOS; chat templates write their own


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_template_for(tokenizer) -> str:
    """The tokenizer's chat template, or the ChatML default used when it has none.

    The default ends assistant turns with ``<|im_end|>`` when the vocabulary has that token, else
    with the EOS token, so that generation stops where training taught it to. Other modules
    (playground, export) use this same function to prompt the tuned model the way it was trained.
    """
    if has_chat_template(tokenizer):
        return tokenizer.chat_template
    end = "<|im_end|>"
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if end not in vocab and getattr(tokenizer, "eos_token", None):
        end = tokenizer.eos_token
    end = end.replace("\\", "\\\\").replace("'", "\\'")
    return ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '"
            + end + "' + '\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def template_description(tokenizer) -> str:
    if has_chat_template(tokenizer):
        return "the model's chat template"
    return "a ChatML template (the tokenizer has no chat template of its own)"


def uses_chat(record: dict, tokenizer) -> bool:
    """Whether a record goes through the chat template (see the module docstring)."""
    return "messages" in record or ("prompt" in record and has_chat_template(tokenizer))


# ---- text + trained spans ---------------------------------------------------------------------

def render(record: dict, tokenizer, data_cfg, where: Where | None = None) -> Rendered:
    """The text of one internal record and the character spans that carry loss."""
    system = getattr(data_cfg, "system_prompt", None) or None
    all_trained = bool(getattr(data_cfg, "train_on_prompt", False))
    eos = getattr(tokenizer, "eos_token", None) or ""
    if uses_chat(record, tokenizer):
        messages = record.get("messages") or [{"role": "user", "content": record["prompt"]},
                                               {"role": "assistant", "content": record["completion"]}]
        if system and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        text, spans = _chat_spans(messages, tokenizer, where)
        return Rendered(text, [(0, len(text))] if all_trained else spans, False)
    if "prompt" in record:
        prompt = f"{system}\n\n{record['prompt']}" if system else record["prompt"]
        text = prompt + record["completion"] + eos
        return Rendered(text, [(0 if all_trained else len(prompt), len(text))], True)
    text = record["text"]
    if eos and not text.endswith(eos):
        text += eos  # teaches the model where a document ends
    return Rendered(text, [(0, len(text))], True)


def _chat_spans(messages: list[dict], tokenizer, where: Where | None) -> tuple[str, list[tuple[int, int]]]:
    template = chat_template_for(tokenizer)

    def apply(msgs, gen=False) -> str:
        return tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False,
                                             add_generation_prompt=gen)

    try:
        whole = apply(messages)
    except Exception as e:  # jinja raises on e.g. "roles must alternate"; name the record instead
        msg = f"the model's chat template rejected this conversation ({e})"
        hint = ("This template may not accept a system turn: clear data.system_prompt, " + SKIP_HINT
                if "system" in str(e).lower() else "Fix the conversation, " + SKIP_HINT)
        raise (where.error(msg, hint=hint) if where else DataError(msg, hint=hint)) from None
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        try:
            before, upto = apply(messages[:i], gen=True), apply(messages[: i + 1])
        except Exception:  # some templates refuse a prefix (e.g. one that must end with a user turn)
            before = upto = None
        if upto is not None and upto.startswith(before) and whole.startswith(upto) and len(before) >= cursor:
            start, end = len(before), len(upto)
        else:
            # The template renders earlier turns differently (e.g. drops reasoning): find the answer
            # text itself and extend over an end-of-turn marker that follows it.
            start = whole.find(message["content"], cursor)
            if start < 0:
                continue
            end = start + len(message["content"])
            markers = (getattr(tokenizer, "eos_token", None) or "", *_END_MARKERS)
            end += next((len(m) for m in markers if m and whole.startswith(m, end)), 0)
        while end > start and whole[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
            cursor = end
    return whole, spans


# ---- tokenization -----------------------------------------------------------------------------

@dataclass
class Encoded:
    ids: list[int]
    flags: list[bool]                          # trained or not, per token
    offsets: list[tuple[int, int]] | None      # fast tokenizers only


def tokenize_rendered(items: list[Rendered], tokenizer) -> list[Encoded]:
    """Token ids and a trained flag per token for each rendered item (batched when possible)."""
    out: list = [None] * len(items)
    if getattr(tokenizer, "is_fast", False):
        for flag in (False, True):
            idx = [i for i, r in enumerate(items) if r.add_special_tokens == flag]
            if not idx:
                continue
            enc = tokenizer([items[i].text for i in idx], add_special_tokens=flag,
                            return_offsets_mapping=True, verbose=False)
            for j, i in enumerate(idx):
                offsets = [tuple(o) for o in enc["offset_mapping"][j]]
                out[i] = Encoded(list(enc["input_ids"][j]), _flags(offsets, items[i].spans), offsets)
        return out
    for i, r in enumerate(items):
        ids, flags = [], []
        for k, (piece, trained) in enumerate(_pieces(r)):
            piece_ids = tokenizer(piece, add_special_tokens=r.add_special_tokens and k == 0,
                                  verbose=False)["input_ids"]
            ids += piece_ids
            flags += [trained] * len(piece_ids)
        out[i] = Encoded(ids, flags, None)
    return out


def _flags(offsets, spans) -> list[bool]:
    flags, k, prev = [], 0, False
    for start, end in offsets:
        if start == end:  # a token with no text (an added BOS): it follows its neighbour
            flags.append(prev)
            continue
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        prev = k < len(spans) and spans[k][0] <= start < spans[k][1]
        flags.append(prev)
    return flags


def _pieces(r: Rendered) -> list[tuple[str, bool]]:
    pieces, pos = [], 0
    for start, end in r.spans:
        if start > pos:
            pieces.append((r.text[pos:start], False))
        pieces.append((r.text[start:end], True))
        pos = end
    if pos < len(r.text):
        pieces.append((r.text[pos:], False))
    return [p for p in pieces if p[0]]


def segments(r: Rendered, enc: Encoded, tokenizer) -> list[tuple[str, bool]]:
    """(text, trained) pieces for display that agree token by token with the labels.

    Each token owns the text from its first character to the next token's first character, so
    the pieces join back to the rendered text; a token with no text (an added BOS) shows as its
    token string.
    """
    if enc.offsets is None:
        return _pieces(r)
    starts = [None if s == e else s for s, e in enc.offsets]
    first = next((k for k, s in enumerate(starts) if s is not None), None)
    next_start, upcoming = [0] * len(starts), len(r.text)
    for k in range(len(starts) - 1, -1, -1):
        next_start[k] = upcoming
        if starts[k] is not None:
            upcoming = starts[k]
    segs: list[list] = []
    for k, flag in enumerate(enc.flags):
        if starts[k] is None:
            text = tokenizer.convert_ids_to_tokens(enc.ids[k])
        else:
            text = r.text[0 if k == first else starts[k]:next_start[k]]
        if segs and segs[-1][1] == flag:
            segs[-1][0] += text
        else:
            segs.append([text, flag])
    return [(t, f) for t, f in segs if t]
