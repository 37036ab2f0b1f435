"""An Ollama ``Modelfile`` beside a GGUF file: FROM, TEMPLATE, SYSTEM, stop tokens, parameters.

Ollama cannot run a Hugging Face (Jinja) chat template; it wants Go's text/template. When it
imports a GGUF without a TEMPLATE it only guesses one by matching the embedded Jinja template
against the ones it knows, which a fine-tune's own template may not match. So the template is
derived from the model's own chat template (``derive_template``): the fixed text around each
turn is read off renderings of probe conversations, put into a Go template, and kept only if
rendering several conversations through it (``engine.export.gotemplate``) gives the same text as
the chat template does. A template that does not fit that turn-by-turn shape (e.g. one that
folds the system prompt into the first user turn) gets no TEMPLATE line, and the Modelfile says
that Ollama will use its own match for the template embedded in the GGUF.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

_S, _U1, _A1, _U2, _A2, _U3 = ("SYSTEMqz1 note", "USERqz1 hi", "ASSISTANTqz1 yes", "USERqz2 why",
                               "ASSISTANTqz2 because", "USERqz3 ok")


@dataclass
class DerivedTemplate:
    """A Go template for Ollama and how it was checked; ``source`` None when none fits."""

    source: str | None
    reason: str = ""
    checked: list[str] = field(default_factory=list)   # conversations rendered identically


def _render_hf(tokenizer, template: str, messages: list[dict], gen: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, chat_template=template)


def _strip_bos(text: str, tokenizer) -> str:
    """Drop a BOS the template writes as text when the tokenizer adds it anyway (llama.cpp and
    Ollama add it from the GGUF's add_bos_token, so the template must not)."""
    bos = getattr(tokenizer, "bos_token", None)
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    adds_bos = bool(ids) and ids[0] == getattr(tokenizer, "bos_token_id", None)
    if bos and adds_bos and text.startswith(bos):
        return text[len(bos):]
    return text


def _split(text: str, *parts: str) -> list[str] | None:
    """The literal pieces between ``parts`` in ``text`` (len(parts)+1 pieces), or None."""
    out, pos = [], 0
    for p in parts:
        at = text.find(p, pos)
        if at < 0:
            return None
        out.append(text[pos:at])
        pos = at + len(p)
    out.append(text[pos:])
    return out


def _go_literal(s: str) -> str:
    """Text for a Go template: literal text, except that ``{{`` must be written as an action."""
    return s.replace("{{", '{{ "{{" }}')


def ollama_messages(messages: list[dict]) -> dict:
    """What Ollama passes a template: System (every system message joined) and Messages."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages],
            "Response": ""}


def derive_template(tokenizer, template: str | None = None) -> DerivedTemplate:
    """A Go template equivalent to the model's chat template on chat conversations."""
    from engine.data import chat_template_for
    from engine.export.gotemplate import TemplateError, render

    template = template or chat_template_for(tokenizer)

    def hf(msgs, gen=True):
        return _strip_bos(_render_hf(tokenizer, template, msgs, gen), tokenizer)

    try:
        one = hf([{"role": "user", "content": _U1}])
        two = hf([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
                  {"role": "user", "content": _U2}])
        closed = hf([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}], gen=False)
    except Exception as e:  # the template refuses plain user/assistant turns
        return DerivedTemplate(None, f"the chat template cannot render a plain conversation ({e})")
    p_one = _split(one, _U1)
    p_two = _split(two, _U1, _A1, _U2)
    p_closed = _split(closed, _U1, _A1)
    if not (p_one and p_two and p_closed):
        return DerivedTemplate(None, "the chat template changes the message text")
    lead, u_then_gen = p_one
    lead2, u_then_a, a_then_u, u_then_gen2 = p_two
    if lead2 != lead or u_then_gen2 != u_then_gen:
        return DerivedTemplate(None, "turns are not rendered one after another the same way")
    # Where the assistant turn ends and the next user turn starts: from a conversation that ends
    # after the assistant, or else (templates that close such a conversation with EOS, as
    # Phi-3's does) by taking the whole lead as the user prefix.
    u_pre = None
    for a_post in (p_closed[2], a_then_u[:len(a_then_u) - len(lead)] if a_then_u.endswith(lead) else None):
        if a_post is not None and a_then_u.startswith(a_post) and lead.endswith(a_then_u[len(a_post):]):
            u_pre = a_then_u[len(a_post):]
            break
    if u_pre is None:
        return DerivedTemplate(None, "the first user turn is rendered differently from the others")
    default_system = lead[:len(lead) - len(u_pre)]
    # The user turn's closing text is what the assistant prefix and the generation prompt share.
    n = 0
    while n < min(len(u_then_a), len(u_then_gen)) and u_then_a[n] == u_then_gen[n]:
        n += 1
    u_post, a_pre, gen = u_then_a[:n], u_then_a[n:], u_then_gen[n:]

    system_block = None
    try:
        with_sys = hf([{"role": "system", "content": _S}, {"role": "user", "content": _U1}])
        parts = _split(with_sys, _S, _U1)
        if parts and parts[1].endswith(u_pre) and parts[2] == u_then_gen:
            system_block = (parts[0], parts[1][:len(parts[1]) - len(u_pre)])
    except Exception:
        pass   # no system role (e.g. Gemma): .System is left out

    # No trim markers ({{- … -}}): the literal pieces carry the template's own white space.
    lit = _go_literal
    src = ""
    if system_block is not None:
        src += "{{ if .System }}" + lit(system_block[0]) + "{{ .System }}" + lit(system_block[1])
        src += "{{ else }}" + lit(default_system) + "{{ end }}" if default_system else "{{ end }}"
    elif default_system:
        src += lit(default_system)
    src += ("{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
            '{{ if eq .Role "user" }}' + lit(u_pre) + "{{ .Content }}" + lit(u_post) +
            '{{ else if eq .Role "assistant" }}' + lit(a_pre) + "{{ .Content }}" + lit(a_post) + "{{ end }}"
            '{{ if and $last (ne .Role "assistant") }}' + lit(gen) + "{{ end }}{{ end }}")

    checks = [[{"role": "user", "content": _U1}],
              [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
               {"role": "user", "content": _U2}],
              [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
               {"role": "user", "content": _U2}, {"role": "assistant", "content": _A2},
               {"role": "user", "content": _U3}]]
    if system_block is not None:
        checks.append([{"role": "system", "content": _S}] + checks[2])
    checked = []
    for msgs in checks:
        try:
            got = render(src, ollama_messages(msgs))
        except TemplateError as e:
            return DerivedTemplate(None, f"the derived template does not render ({e})")
        if got != hf(msgs):
            return DerivedTemplate(None, "the chat template is not a fixed text around each turn")
        checked.append(" / ".join(m["role"] for m in msgs))
    return DerivedTemplate(src, checked=checked)


def _generation_defaults(generation_config) -> list[tuple[str, object]]:
    """Ollama PARAMETERs from the model's generation_config (the author's sampling defaults)."""
    if generation_config is None:
        return []
    out = []
    sample = getattr(generation_config, "do_sample", False)
    for hf_key, ollama_key in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                               ("repetition_penalty", "repeat_penalty")):
        v = getattr(generation_config, hf_key, None)
        if v is None or (hf_key != "repetition_penalty" and not sample):
            continue
        if hf_key == "repetition_penalty" and v == 1.0:
            continue
        out.append((ollama_key, v))
    return out


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _triple(s: str) -> str:
    if '"""' in s:
        return _quote(s)
    return '"""' + s + '"""'


@dataclass
class Modelfile:
    text: str
    template: DerivedTemplate
    stops: list[str]

    def create_command(self, name: str, folder: str | Path = ".") -> str:
        return f"ollama create {name} -f {Path(folder) / 'Modelfile'}"


def ollama_model_name(name: str) -> str:
    """A name Ollama accepts (lower case letters, digits, '-', '_', '.')."""
    import re

    out = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return out or "my-model"


def build_modelfile(gguf_file: str, tokenizer, generation_config=None, system_prompt: str | None = None,
                    context_length: int | None = None, adapter_file: str | None = None) -> Modelfile:
    """The Modelfile text for ``gguf_file`` (a path relative to the Modelfile's folder).

    ``adapter_file``: a GGUF LoRA adapter applied to ``gguf_file`` (Ollama's ADAPTER line).
    ``context_length``: the model's; ``num_ctx`` is set to it, capped at 8192 — Ollama's default
    window (2048 or 4096, by version) silently cuts longer chats, and a larger one costs memory.
    """
    from engine.export.chat_tokens import stop_strings

    derived = derive_template(tokenizer)
    stops = stop_strings(tokenizer, generation_config)
    lines = ["# Made by PEFT Studio. Create the model with:  ollama create NAME -f Modelfile", "",
             f"FROM ./{gguf_file}"]
    if adapter_file:
        lines.append(f"ADAPTER ./{adapter_file}")
    if derived.source is not None:
        lines += ["", "# The chat template, in Ollama's Go template syntax. It renders "
                  + ", ".join(derived.checked) + " conversations", "# to the same text as the model's own "
                  "chat template (checked when this file was written).",
                  f"TEMPLATE {_triple(derived.source)}"]
    else:
        lines += ["", f"# No TEMPLATE: {derived.reason}. Ollama uses the template it matches to the",
                  "# chat template embedded in the GGUF file; check `ollama show NAME --template`."]
    if system_prompt:
        lines += ["", "# The system prompt the training data used.", f"SYSTEM {_triple(system_prompt)}"]
    lines += ["", "# Stop at the end of a turn (EOS and end-of-turn tokens of the tokenizer and generation config)."]
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    params = _generation_defaults(generation_config)
    if context_length:
        params.append(("num_ctx", min(int(context_length), 8192)))
    if params:
        lines += ["", "# Defaults: the model's generation_config and its context length (capped at 8192)."]
        lines += [f"PARAMETER {k} {v}" for k, v in params]
    return Modelfile("\n".join(lines) + "\n", derived, stops)
