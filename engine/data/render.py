"""Render internal records to text with the chat template and tokenize them with label masks.

A record becomes one text plus the character spans that are trained:

* messages: the whole conversation through the model's chat template (a ChatML default when the
  tokenizer has none), with the record's tools schema as ``tools=``, tool calls as ``tool_calls``,
  tool results as role ``tool`` and reasoning under the key the template reads (template.py). Each
  trained turn's span is found by rendering prefix by prefix: for an assistant turn,
  ``template(messages[:i], add_generation_prompt=True)`` ends where the answer starts and
  ``template(messages[:i+1])`` ends after its end-of-turn token. So the span covers the answer
  (its tool calls included) and its end-of-turn token (``<|im_end|>``), whatever the template looks
  like. Whitespace after that token (ChatML's newline) is left untrained: generation stops at the
  token and never produces it. Which turns are trained: assistant turns, unless a turn's
  ``weight`` (0/1, from ``loss_weight``) says otherwise; ``data.train_on_prompt`` trains the rest.
* prompt/completion: through the chat template as a user/assistant exchange when the tokenizer has
  its own template (an instruct model expects it, and the playground prompts that way); otherwise
  raw ``prompt + completion + eos`` (completion-style training of a base model).
* text: ``text + eos``, all trained.

Placeholders such as ``{{name}}`` are filled from ``data.replacements`` first.

Tokens are labelled from the fast tokenizer's offsets (a token is trained when its first character
lies in a trained span), so the ids are exactly those of tokenizing the whole text, as at inference.
Slow tokenizers (no offsets) fall back to tokenizing the pieces one after another.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from engine.data.errors import SKIP_HINT, DataError, Where
from engine.data.formats import uses_tools
from engine.data.template import (  # noqa: F401  (re-exported: engine.data.chat_template_for)
    TemplateCaps,
    chat_template_for,
    has_chat_template,
    template_caps,
    template_description,
)

_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


@dataclass
class Rendered:
    text: str
    spans: list[tuple[int, int]]   # trained character ranges, sorted, non-overlapping
    add_special_tokens: bool       # raw text gets the tokenizer's BOS; chat templates write their own


def uses_chat(record: dict, tokenizer) -> bool:
    """Whether a record goes through the chat template (see the module docstring)."""
    return "messages" in record or ("prompt" in record and has_chat_template(tokenizer))


def fill_placeholders(text: str, replacements: dict | None) -> str:
    """``{{name}}`` → ``replacements[name]`` for the names given; others stay as they are."""
    if not replacements or "{{" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: str(replacements[m.group(1)]) if m.group(1) in replacements else m.group(0),
                           text)


def _filled(record: dict, replacements: dict | None) -> dict:
    if not replacements:
        return record
    if "messages" in record:
        msgs = []
        for m in record["messages"]:
            m = dict(m, content=fill_placeholders(m["content"], replacements))
            if m.get("reasoning"):
                m["reasoning"] = fill_placeholders(m["reasoning"], replacements)
            msgs.append(m)
        return {**record, "messages": msgs}
    return {k: fill_placeholders(v, replacements) if isinstance(v, str) else v for k, v in record.items()}


# ---- text + trained spans ---------------------------------------------------------------------

def render(record: dict, tokenizer, data_cfg, where: Where | None = None, caps: TemplateCaps | None = None) -> Rendered:
    """The text of one internal record and the character spans that carry loss.

    Raises DataError (naming ``where``) when the template rejects the conversation, or cannot render
    the tools or reasoning the record has (see template.py)."""
    system = getattr(data_cfg, "system_prompt", None) or None
    all_trained = bool(getattr(data_cfg, "train_on_prompt", False))
    record = _filled(record, getattr(data_cfg, "replacements", None))
    eos = getattr(tokenizer, "eos_token", None) or ""
    if uses_chat(record, tokenizer):
        caps = caps or template_caps(tokenizer)
        messages = record.get("messages") or [{"role": "user", "content": record["prompt"]},
                                               {"role": "assistant", "content": record["completion"]}]
        if system and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        weighted = any("weight" in m for m in messages)
        if uses_tools(record) and not caps.tools:
            raise _error(where, f"uses tools ({_tool_use(record)}), but {caps.tools_problem()}", caps.tools_hint())
        chat = _template_messages(messages, caps, where, getattr(data_cfg, "reasoning", "auto"))
        text, spans = _chat_spans(chat, messages, tokenizer, where, all_trained, record.get("tools") or None)
        if all_trained and not weighted:
            spans = [(0, len(text))]
        return Rendered(text, spans, False)
    if "prompt" in record:
        prompt = f"{system}\n\n{record['prompt']}" if system else record["prompt"]
        text = prompt + record["completion"] + eos
        return Rendered(text, [(0 if all_trained else len(prompt), len(text))], True)
    text = record["text"]
    if eos and not text.endswith(eos):
        text += eos  # teaches the model where a document ends
    return Rendered(text, [(0, len(text))], True)


def _error(where: Where | None, problem: str, hint: str, field: str | None = None) -> DataError:
    return where.error(problem, field=field, hint=hint) if where else DataError(problem, field=field, hint=hint)


def _tool_use(record: dict) -> str:
    what = []
    msgs = record.get("messages", ())
    if any(m.get("tool_calls") for m in msgs):
        what.append("tool calls")
    if any(m["role"] == "tool" for m in msgs):
        what.append("tool results")
    if record.get("tools"):
        what.append("a tools schema")
    return ", ".join(what)


def _template_messages(messages: list[dict], caps: TemplateCaps, where, reasoning_mode: str) -> list[dict]:
    """Internal turns → the dicts chat templates read (transformers' documented message shape)."""
    out = []
    for i, m in enumerate(messages):
        t = {"role": m["role"], "content": m["content"]}
        for key in ("tool_calls", "name", "tool_call_id"):
            if m.get(key):
                t[key] = m[key]
        if m.get("reasoning"):
            if caps.thinking_key:
                t[caps.thinking_key] = m["reasoning"]
            elif reasoning_mode != "drop":
                raise _error(where, "has reasoning, but the chat template has no thinking support (it reads no "
                             "reasoning_content or thinking key), and reasoning is never glued to the answer",
                             "Set data.reasoning: drop to train the answers without their reasoning, use a model "
                             "whose template renders reasoning, " + SKIP_HINT, field=f"messages[{i}]")
        out.append(t)
    return out


def _trained(m: dict, all_trained: bool) -> bool:
    if "weight" in m:
        return bool(m["weight"])
    return m["role"] == "assistant" or all_trained


def _chat_spans(chat: list[dict], messages: list[dict], tokenizer, where: Where | None, all_trained: bool,
                tools) -> tuple[str, list[tuple[int, int]]]:
    template = chat_template_for(tokenizer)

    def apply(msgs, gen=False) -> str:
        return tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False,
                                             add_generation_prompt=gen, tools=tools)

    try:
        whole = apply(chat)
    except Exception as e:  # jinja raises on e.g. "roles must alternate"; name the record instead
        msg = f"the model's chat template rejected this conversation ({e})"
        hint = ("This template may not accept a system turn: clear data.system_prompt, " + SKIP_HINT
                if "system" in str(e).lower() else "Fix the conversation, " + SKIP_HINT)
        raise _error(where, msg, hint) from None
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if not _trained(message, all_trained):
            continue
        assistant = message["role"] == "assistant"
        try:
            before = apply(chat[:i], gen=True) if assistant else (apply(chat[:i]) if i else "")
            upto = whole if i == len(chat) - 1 else apply(chat[: i + 1])  # the last turn ends the whole
        except Exception:  # some templates refuse a prefix (e.g. one that must end with a user turn)
            before = upto = None
        if upto is not None and upto.startswith(before) and whole.startswith(upto) and len(before) >= cursor:
            start, end = len(before), len(upto)
        else:
            # The template renders earlier turns differently (e.g. drops reasoning): find the answer
            # text itself and extend over an end-of-turn marker that follows it.
            if not message["content"]:
                continue
            start = whole.find(message["content"], cursor)
            if start < 0:
                continue
            end = start + len(message["content"])
            markers = (getattr(tokenizer, "eos_token", None) or "", *_END_MARKERS)
            end += next((len(m) for m in markers if m and whole.startswith(m, end)), 0)
        while end > start and whole[end - 1].isspace():
            end -= 1
        if end > start:
            if spans and spans[-1][1] >= start:  # adjacent trained turns (weights) merge
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
            cursor = end
    return whole, spans


# ---- tokenization -----------------------------------------------------------------------------

@dataclass
class Encoded:
    ids: list[int]
    flags: list[bool]                          # trained or not, per token
    offsets: list[tuple[int, int]] | None      # fast tokenizers only


def tokenize_rendered(items: list[Rendered], tokenizer, want_offsets: bool = True) -> list[Encoded]:
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
                offsets = enc["offset_mapping"][j]
                out[i] = Encoded(enc["input_ids"][j], _flags(offsets, items[i].spans),
                                 [tuple(o) for o in offsets] if want_offsets else None)
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
    """Trained or not per token: a token is trained when its first character lies in a span; a
    token with no text (an added BOS) follows the token before it. Spans are found by bisection
    over the tokens' first characters (this runs for every token of every example)."""
    starts = [o[0] for o in offsets]
    flags = [False] * len(starts)
    for a, b in spans:
        i0, i1 = bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)
        flags[i0:i1] = [True] * (i1 - i0)
    empty = [k for k, o in enumerate(offsets) if o[0] == o[1]]
    for k in empty:  # in order, so a run of empty tokens follows the last real one
        flags[k] = flags[k - 1] if k else False
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
