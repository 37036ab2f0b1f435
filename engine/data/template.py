"""What a chat template can render: tools, reasoning, content parts. Found by rendering probes.

Templates are Jinja programs with no declared features, so the only reliable way to know whether
one renders tool calls, tool results and the tools schema, reads a turn's reasoning (and under
which key: Qwen3 and DeepSeek read ``reasoning_content``, gpt-oss and LFM2.5 ``thinking``), or
accepts content as a list of parts, is to render a small conversation that uses the feature with
unmistakable marker strings and look for them in the output. Each probe runs once per template.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

THINKING_KEYS = ("reasoning_content", "thinking", "reasoning")
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": "zqprobefn", "description": "zqprobedescription",
    "parameters": {"type": "object", "properties": {"zqarg": {"type": "string"}}, "required": ["zqarg"]}}}]
_CACHE: dict[str, TemplateCaps] = {}


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


@dataclass(frozen=True)
class TemplateCaps:
    """What the chat template (``chat_template_for(tokenizer)``) renders.

    ``tools``: it renders all three of the tools schema (``tools=``), assistant ``tool_calls`` and
    ``tool`` turns; ``tools_missing`` names what it drops otherwise. ``thinking_key``: the message
    key it reads a turn's reasoning from (None: no thinking support). ``list_content``: it accepts
    content as a list of text parts, putting ``part_separator`` between two parts; when it does not,
    ``part_separator`` is ``"\\n"`` (the parts are joined before rendering, and the report says so).
    ``digest``: a hash of the template text.
    """

    own: bool
    tools: bool
    tools_missing: tuple[str, ...]
    thinking_key: str | None
    list_content: bool
    part_separator: str
    digest: str

    def tools_problem(self) -> str:
        whose = "the model's chat template" if self.own else "the default ChatML template (the model has none)"
        return f"{whose} cannot render tools: it drops {_join(self.tools_missing)}"

    def tools_hint(self) -> str:
        return ("Use a model whose chat template supports tools (tools=, tool_calls and role tool), or set "
                "data.skip_bad_lines: true to skip the rows that use tools (each is listed).")

    def notes(self) -> list[str]:
        """One line per decision the template implies, for the data report."""
        out = []
        if self.list_content:
            out.append(f"content parts: joined as the chat template joins them ({self.part_separator!r} between parts)")
        else:
            out.append("content parts: the chat template renders content only as text, so text parts are joined "
                       "with a newline")
        out.append(f"reasoning: rendered through the template's own thinking support ({self.thinking_key})"
                   if self.thinking_key else "reasoning: the chat template has no thinking support")
        out.append("tools: rendered by the chat template (tools=, tool_calls, role tool)" if self.tools
                   else f"tools: the chat template cannot render them (it drops {_join(self.tools_missing)})")
        return out


def _join(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def template_caps(tokenizer) -> TemplateCaps:
    """Probe the chat template once (cached by its text and special tokens)."""
    template = chat_template_for(tokenizer)
    key = hashlib.sha256((template + repr(sorted(getattr(tokenizer, "special_tokens_map", {}).items())))
                         .encode("utf-8")).hexdigest()
    if key not in _CACHE:
        _CACHE[key] = _probe(tokenizer, template, key[:16])
    return _CACHE[key]


def _render(tokenizer, template: str, messages, **kw) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, **kw)
    except Exception:  # a template that raises on the probe does not support what it probes
        return None


def _probe(tokenizer, template: str, digest: str) -> TemplateCaps:
    conversation = [
        {"role": "user", "content": "zqquestion"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "zqcalledfn", "arguments": {"zqarg": "zqargvalue"}}}]},
        {"role": "tool", "content": "zqtoolresult", "name": "zqcalledfn"},
        {"role": "assistant", "content": "zqanswer"},
    ]
    out = _render(tokenizer, template, conversation, tools=_PROBE_TOOLS) or ""
    missing = tuple(what for what, marker in (("the tools schema", "zqprobefn"), ("tool calls", "zqargvalue"),
                                              ("tool results", "zqtoolresult")) if marker not in out)
    thinking = None
    for k in THINKING_KEYS:
        got = _render(tokenizer, template, [{"role": "user", "content": "zqquestion"},
                                            {"role": "assistant", "content": "zqanswer", k: "zqthought"}])
        if got and "zqthought" in got:
            thinking = k
            break
    parts = _render(tokenizer, template, [
        {"role": "user", "content": [{"type": "text", "text": "zqpartone"}, {"type": "text", "text": "zqparttwo"}]},
        {"role": "assistant", "content": "zqanswer"}])
    list_ok = bool(parts) and "zqpartone" in parts and "zqparttwo" in parts and "'type'" not in parts \
        and parts.index("zqpartone") < parts.index("zqparttwo")
    sep = parts[parts.index("zqpartone") + len("zqpartone"):parts.index("zqparttwo")] if list_ok else "\n"
    return TemplateCaps(has_chat_template(tokenizer), not missing, missing, thinking, list_ok, sep, digest)
