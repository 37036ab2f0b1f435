"""Detect a data set's format from its columns and convert records to one internal shape.

Internal shapes (everything downstream sees only these):

* ``{"messages": [turn, ...], "tools": [...]?}`` from OpenAI messages, ShareGPT conversations and
  alpaca (instruction [+ input] → user, output → assistant, optional system and history). A turn
  is ``{"role": "system"|"user"|"assistant"|"tool", "content": str}`` plus, only when the record
  has them: ``weight`` (0 or 1: whether the turn carries loss), ``tool_calls`` (OpenAI's
  ``[{"type": "function", "function": {"name", "arguments"}}]``, arguments parsed to an object
  when they are JSON text), ``reasoning`` (the turn's thinking), ``name`` and ``tool_call_id``;
* ``{"prompt": str, "completion": str}`` from prompt/completion (or question/answer, ...); a
  prompt or completion written as a list of messages becomes a ``messages`` record;
* ``{"text": str}`` for plain text.

Spellings read: content as text or as parts (``{"type": "text", "text"|"value": ...}``, reasoning
parts ``{"type": "reasoning"|"thinking", ...}``); per-turn ``loss_weight`` or ``weight``; ShareGPT
``function_call`` / ``observation`` turns (a tool call and its result); OpenAI ``tool_calls``, the
legacy ``function_call`` and ``function`` role; ``reasoning_content`` / ``reasoning`` / ``thinking``.
Text parts are joined with ``part_separator`` (prepare_data passes the chat template's own). Line
endings inside text become ``\\n``.

``data.columns`` maps internal names to the file's columns ({prompt: question}) and wins over
detection (detect.plan_format). Auto-detection records a ``reason`` the GUI shows ("columns instruction, output → alpaca").
Columns that change what the model learns (preference pairs, a boolean label, tools a template
cannot render, images) are refused until mapped: see tasks.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine.data.errors import SKIP_HINT, DataError, Where, describe

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")
# Names data.columns may map (internal name → the file's column).
COLUMN_KEYS = ("messages", "conversations", "instruction", "input", "output", "system", "history",
               "prompt", "completion", "text", "assistant", "tools", "label")
# prompt/completion pairs recognised without a mapping, in order of preference.
PC_PAIRS = (("prompt", "completion"), ("prompt", "response"), ("question", "answer"),
            ("query", "response"), ("input", "output"))
ROLES = {"system": "system", "developer": "system", "user": "user", "human": "user",
         "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
         "chatgpt": "assistant", "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool",
         "function_call": "assistant"}
TOOLS_COLUMNS = ("tools", "functions")
_EXPECTED = ("messages (a list of role/content turns), conversations (ShareGPT from/value turns), "
             "instruction + output (alpaca), prompt + completion (also question + answer, input + output) "
             "or text")
_TEXT_PART = ("text", "input_text", "output_text")
_REASONING_PART = ("reasoning", "thinking")
_MEDIA_PART = ("image", "image_url", "input_image", "audio", "input_audio", "video", "video_url", "file")


@dataclass
class Plan:
    """How to read a table: the format and which column feeds each internal field."""

    format: str
    columns: dict          # internal name → the file's column
    reason: str
    ignored: list[str] = field(default_factory=list)   # the file's columns this plan does not read
    notes: list[str] = field(default_factory=list)     # decisions worth a line in the report

    @property
    def used(self) -> list[str]:
        return list(dict.fromkeys(self.columns.values()))


@dataclass
class NormOptions:
    """Choices that shape normalised records (prepare_data fills them from the chat template)."""

    part_separator: str = ""          # between text parts of one message's content


# ---- detection --------------------------------------------------------------------------------

def choose_plan(fmt: str, found: list[str], rows: list[dict], mapping: dict | None, source: str,
                caps=None) -> Plan:
    """Decide the format (``fmt`` may be 'auto') and the column for each internal field.

    ``rows`` is a sample of parsed records. ``caps`` (template.TemplateCaps, optional) says what
    the chat template renders: a tools column is read only when it can render tools. Raises
    DataError (field data.format / data.columns) when the columns fit no format. Callers go
    through detect.plan_format, which first refuses columns that change what is learned."""
    mapping = check_mapping(mapping or {}, found, source)
    plan = _choose(fmt, found, rows, mapping, source)
    for name in ("tools", "label", "assistant"):
        if name in mapping:
            plan.columns[name] = mapping[name]
    if "tools" not in plan.columns:
        col = next((c for c in TOOLS_COLUMNS if c in found and c not in plan.columns.values()), None)
        if col is not None and (caps is None or caps.tools):
            plan.columns["tools"] = col
            plan.notes.append(f"column {col}: the tools schema, given to the chat template")
        elif col is not None:
            plan.notes.append(f"column {col} is not read: the chat template cannot render tools, so the rows "
                              "that call tools or hold tool results are skipped (data.skip_bad_lines)")
    plan.ignored = [c for c in found if c not in set(plan.columns.values())]
    return plan


def _choose(fmt: str, found: list[str], rows: list[dict], mapping: dict, source: str) -> Plan:
    taken = set(mapping.values())

    def pick(name, *aliases):
        if name in mapping:
            return mapping[name]
        return next((a for a in (name, *aliases) if a in found and a not in taken), None)

    def turn_style(col):  # "sharegpt" (from/value), "messages" (role/content) or None
        for row in rows[:50]:
            turns = _maybe_json_list(row.get(col))
            if isinstance(turns, list) and turns and isinstance(turns[0], dict):
                if turns[0].get("from") is not None or (turns[0].get("role") is None and "value" in turns[0]):
                    return "sharegpt"
                return "messages"
        return None

    candidates = {}
    for col in (pick("messages"), pick("conversations")):
        if col is not None:
            style = turn_style(col) or ("messages" if col == pick("messages") else "sharegpt")
            candidates.setdefault(style, {"messages" if style == "messages" else "conversations": col})
    instr, out = pick("instruction"), pick("output", "response")
    if instr and (out or "assistant" in mapping):
        candidates["alpaca"] = {"instruction": instr, **({"output": out} if out else {})}
        for name, aliases in (("input", ("context",)), ("system", ()), ("history", ())):
            col = pick(name, *aliases)
            if col and col not in (instr, out):
                candidates["alpaca"][name] = col
    if "prompt" in mapping or "completion" in mapping:
        pairs = [(pick("prompt"), pick("completion") or mapping.get("assistant"))]
    else:
        pairs = [(a, b) for a, b in PC_PAIRS if a in found and b in found]
    if pairs and all(pairs[0]):
        candidates["prompt_completion"] = {"prompt": pairs[0][0], "completion": pairs[0][1]}
    if pick("text"):
        candidates["text"] = {"text": pick("text")}

    if fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(f"unknown format '{fmt}'", field="data.format",
                            hint=f"Use auto or one of {', '.join(FORMATS)}.")
        if fmt not in candidates and fmt == "messages" and "sharegpt" in candidates:
            candidates[fmt] = {"messages": next(iter(candidates["sharegpt"].values()))}
        if fmt not in candidates and fmt == "sharegpt" and "messages" in candidates:
            candidates[fmt] = {"conversations": next(iter(candidates["messages"].values()))}
        if fmt not in candidates:
            raise _wrong_columns(fmt, found, source)
        return Plan(fmt, dict(candidates[fmt]), f"format {fmt} set in data.format")

    for name in ("messages", "sharegpt", "alpaca", "prompt_completion", "text"):
        if name in candidates:
            cols = dict(candidates[name])
            if mapping:
                used = ", ".join(f"{k} ← {v}" for k, v in mapping.items())
                return Plan(name, cols, f"data.columns maps {used} → {name}")
            return Plan(name, cols, f"columns {', '.join(cols.values())} → {name}")
    example = ", ".join(f"{k}: {v}" for k, v in zip(("prompt", "completion"), found))
    raise DataError(f"cannot tell the data format from the columns {_names(found)}; expected {_EXPECTED}",
                    file=source, field="data.format",
                    hint=f"Set data.format and map your columns with data.columns, e.g. {{{example}}}.")


def check_mapping(mapping: dict, found: list[str], source: str) -> dict:
    """data.columns checked against the file's columns (DataError naming the bad key)."""
    if not isinstance(mapping, dict):
        raise DataError("must map internal names to your columns, e.g. {prompt: question}",
                        field="data.columns")
    out = {}
    for key, col in mapping.items():
        if key not in COLUMN_KEYS:
            raise DataError(f"unknown name '{key}'", field=f"data.columns.{key}",
                            hint=f"Valid names: {', '.join(COLUMN_KEYS)}.")
        if col not in found:
            raise DataError(f"data.columns maps {key} to the column '{col}', which the file does not have "
                            f"(columns found: {_names(found)})", file=source, field=f"data.columns.{key}",
                            hint="Fix the column name in data.columns.")
        out[key] = str(col)
    return out


def _wrong_columns(fmt: str, found: list[str], source: str) -> DataError:
    need = {"alpaca": ("instruction and output (input, system optional)", "{instruction: q, output: a}"),
            "sharegpt": ("conversations (a list of from/value turns)", "{conversations: dialog}"),
            "messages": ("messages (a list of role/content turns)", "{messages: dialog}"),
            "prompt_completion": ("prompt and completion (or question/answer, input/output)",
                                  "{prompt: question, completion: answer}"),
            "text": ("text", "{text: body}")}[fmt]
    return DataError(f"format {fmt} needs the columns {need[0]}; found: {_names(found)}", file=source,
                     field="data.columns",
                     hint=f"Map them with data.columns, e.g. {need[1]}, or set data.format: auto.")


def _names(found) -> str:
    return ", ".join(found) if found else "(none)"


# ---- normalisation ----------------------------------------------------------------------------

def clean_text(s: str) -> str:
    """Line endings normalised to ``\\n`` (a CR from a Windows CSV cell is never trained)."""
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    return s


def normalize(row: dict, plan: Plan, where: Where, opts: NormOptions | None = None) -> dict:
    """Convert one row to the internal shape; raise DataError naming the record and field."""
    opts = opts or NormOptions()
    c = plan.columns
    if plan.format in ("messages", "sharegpt"):
        col = c.get("messages") or c.get("conversations")
        messages = _turns(_get(row, col, where, plan), col, where, opts, need_answer="assistant" not in c)
        record = {"messages": _with_answer(messages, row, c, where, opts)}
    elif plan.format == "alpaca":
        instruction = _text(_get(row, c["instruction"], where, plan), where, c["instruction"])
        extra = _text(row.get(c["input"]), where, c["input"], required=False) if "input" in c else ""
        messages = []
        if "system" in c:
            system = _text(row.get(c["system"]), where, c["system"], required=False)
            if system.strip():
                messages.append({"role": "system", "content": system})
        if "history" in c:
            messages += _history(row.get(c["history"]), c["history"], where)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        messages.append({"role": "user", "content": user})
        if "output" in c:
            messages.append({"role": "assistant", "content": _text(_get(row, c["output"], where, plan), where,
                                                                      c["output"])})
        record = {"messages": _with_answer(messages, row, c, where, opts)}
    elif plan.format == "prompt_completion":
        prompt = _get(row, c["prompt"], where, plan)
        completion = _get(row, c["completion"], where, plan)
        if isinstance(_maybe_json_list(prompt), list) or isinstance(_maybe_json_list(completion), (list, dict)):
            record = {"messages": _conversational_pc(prompt, completion, c, where, opts)}
        else:
            record = {"prompt": clean_text(_text(prompt, where, c["prompt"])),
                      "completion": clean_text(_text(completion, where, c["completion"]))}
    else:
        record = {"text": clean_text(_text(_get(row, c["text"], where, plan), where, c["text"]))}
    if "messages" in record:
        for m in record["messages"]:
            m["content"] = clean_text(m["content"])
        if "tools" in c:
            tools = parse_tools(row.get(c["tools"]), c["tools"], where)
            if tools:
                record["tools"] = tools
    return record


def label_of(row: dict, plan: Plan, where: Where) -> bool | None:
    """The row's boolean label when data.columns maps ``label`` (None when not mapped)."""
    col = plan.columns.get("label")
    if col is None:
        return None
    v = row.get(col)
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise where.error(f"expected true or false but found {describe(v)}", field=col,
                      hint="Fix the label, " + SKIP_HINT)


def _with_answer(messages: list[dict], row: dict, c: dict, where: Where, opts: NormOptions) -> list[dict]:
    """Append the mapped ``assistant`` column (text or one turn) as the final assistant turn."""
    col = c.get("assistant")
    if col is None:
        return messages
    value = _maybe_json_list(row.get(col))
    if isinstance(value, list):  # a list holding the one answer turn
        turns = _turns(value, col, where, opts, need_answer=True)
        return messages + turns
    if isinstance(value, dict):
        turn = _turn(value, 0, col, where, opts)
        if turn["role"] != "assistant":
            raise where.error(f"the answer is a {turn['role']} turn, not the assistant's", field=col,
                              hint="Map a column that holds the assistant's answer, " + SKIP_HINT)
        return messages + [turn]
    return messages + [{"role": "assistant", "content": _text(value, where, col)}]


def _conversational_pc(prompt, completion, c: dict, where: Where, opts: NormOptions) -> list[dict]:
    """TRL's conversational prompt/completion (lists of messages) → one conversation."""
    p = _maybe_json_list(prompt)
    head = (_turns(p, c["prompt"], where, opts, need_answer=False) if isinstance(p, list)
            else [{"role": "user", "content": _text(prompt, where, c["prompt"])}])
    comp = _maybe_json_list(completion)
    if isinstance(comp, dict):
        comp = [comp]
    tail = (_turns(comp, c["completion"], where, opts, need_answer=True) if isinstance(comp, list)
            else [{"role": "assistant", "content": _text(completion, where, c["completion"])}])
    return head + tail


def _history(value, col: str, where: Where) -> list[dict]:
    """Alpaca ``history``: [[instruction, response], ...] before the current instruction."""
    value = _maybe_json_list(value)
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(f"expected a list of [instruction, response] pairs but found {describe(value)}",
                          field=col, hint="Fix the record, " + SKIP_HINT)
    out = []
    for j, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise where.error(f"expected an [instruction, response] pair but found {describe(pair)}",
                              field=f"{col}[{j}]", hint="Fix the record, " + SKIP_HINT)
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


def _get(row: dict, col: str, where: Where, plan: Plan):
    if col not in row:
        raise where.error(f"has no '{col}' field (the data is read as {plan.format})", field=col,
                          hint="Add the field, " + SKIP_HINT)
    return row[col]


def _text(value, where: Where, field: str, required: bool = True) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        if not required:
            return ""
        raise where.error("is empty (null) but must hold text", field=field, hint="Fill it in, " + SKIP_HINT)
    hint = "Put it in quotes so it is text, " if isinstance(value, (int, float)) else "Fix the record, "
    raise where.error(f"expected text but found {describe(value)}", field=field, hint=hint + SKIP_HINT)


def _maybe_json_list(value):
    # CSV and Parquet exports often store a conversation (or a tools schema) as a JSON string.
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _turns(value, col: str, where: Where, opts: NormOptions, need_answer: bool = True) -> list[dict]:
    value = _maybe_json_list(value)
    if not isinstance(value, (list, tuple)):
        raise where.error(f"expected a list of turns but found {describe(value)}", field=col,
                          hint="Fix the record, " + SKIP_HINT)
    out = [_turn(turn, j, col, where, opts) for j, turn in enumerate(value)]
    if need_answer and not any(t["role"] == "assistant" for t in out):
        raise where.error("the conversation has no assistant turn, so there is nothing to learn from it",
                          field=col, hint="Add the assistant's answer, " + SKIP_HINT)
    return out


def _turn(turn, j: int, col: str, where: Where, opts: NormOptions) -> dict:
    f = f"{col}[{j}]"
    if not isinstance(turn, dict):
        raise where.error(f"expected a turn object but found {describe(turn)}", field=f,
                          hint="Fix the record, " + SKIP_HINT)
    # Arrow fills absent struct fields with None, so a turn may carry both key styles.
    role_key = "role" if turn.get("role") is not None else "from"
    content_key = "content" if turn.get("content") is not None or "value" not in turn else "value"
    raw_role = turn.get(role_key)
    spelled = str(raw_role).strip().lower() if raw_role is not None else None
    role = ROLES.get(spelled) if spelled is not None else None
    if role is None:
        raise where.error(f"unknown role {raw_role!r}; expected system, user, assistant or tool "
                          "(or ShareGPT's human, gpt, function_call, observation)", field=f"{f}.{role_key}",
                          hint="Fix the role, " + SKIP_HINT)
    out: dict = {"role": role}
    content = turn.get(content_key)
    reasoning = []
    if spelled == "function_call":  # ShareGPT: the value is the call itself, as JSON
        out["content"] = ""
        out["tool_calls"] = _calls_from_json(content, f"{f}.{content_key}", where)
    else:
        if isinstance(content, list):
            content, reasoning = _parts(content, f"{f}.{content_key}", where, opts)
        elif content is None and (turn.get("tool_calls") or turn.get("function_call")) and role == "assistant":
            content = ""  # OpenAI writes content: null beside tool calls
        out["content"] = _text(content, where, f"{f}.{content_key}")
    for key in ("reasoning_content", "reasoning", "thinking"):
        r = turn.get(key)
        if isinstance(r, str) and r.strip():
            reasoning.append(r)
        elif r is not None and not isinstance(r, str):
            raise where.error(f"expected text but found {describe(r)}", field=f"{f}.{key}",
                              hint="Fix the record, " + SKIP_HINT)
    if reasoning:
        if role != "assistant":
            raise where.error("only assistant turns can carry reasoning", field=f,
                              hint="Fix the record, " + SKIP_HINT)
        out["reasoning"] = clean_text(opts.part_separator.join(reasoning) if len(reasoning) > 1 else reasoning[0])
    calls = turn.get("tool_calls")
    if calls is None and isinstance(turn.get("function_call"), dict):  # OpenAI's legacy single call
        calls = [{"type": "function", "function": turn["function_call"]}]
    if calls is not None and spelled != "function_call":
        if role != "assistant":
            raise where.error("only assistant turns can call tools", field=f"{f}.tool_calls",
                              hint="Fix the record, " + SKIP_HINT)
        calls = _maybe_json_list(calls)
        if not isinstance(calls, list):
            raise where.error(f"expected a list of tool calls but found {describe(calls)}",
                              field=f"{f}.tool_calls", hint="Fix the record, " + SKIP_HINT)
        if calls:
            out["tool_calls"] = [_call(c, f"{f}.tool_calls[{k}]", where) for k, c in enumerate(calls)]
    weight = _weight(turn, f, where)
    if weight is not None:
        out["weight"] = weight
    if role == "tool":
        for key in ("name", "tool_call_id"):
            if isinstance(turn.get(key), str) and turn[key]:
                out[key] = turn[key]
    return out


def _parts(parts: list, field: str, where: Where, opts: NormOptions) -> tuple[str, list[str]]:
    """Content parts → (text parts joined with the template's separator, reasoning parts)."""
    texts, reasoning = [], []
    for k, p in enumerate(parts):
        f = f"{field}[{k}]"
        if isinstance(p, str):
            texts.append(p)
            continue
        if not isinstance(p, dict):
            raise where.error(f"expected a content part such as {{type: text, text: ...}} but found {describe(p)}",
                              field=f, hint="Fix the record, " + SKIP_HINT)
        kind = p.get("type") or "text"
        if kind in _TEXT_PART:
            value = p.get("text") if p.get("text") is not None else p.get("value")
            if not isinstance(value, str):
                raise where.error("a text part needs its text under 'text' or 'value'", field=f,
                                  hint="Fix the record, " + SKIP_HINT)
            texts.append(value)
        elif kind in _REASONING_PART:
            value = next((p[k] for k in ("text", kind, "value", "reasoning", "thinking")
                          if isinstance(p.get(k), str)), None)
            if value is None:
                raise where.error(f"a {kind} part needs its text under 'text'", field=f,
                                  hint="Fix the record, " + SKIP_HINT)
            reasoning.append(value)
        elif kind in _MEDIA_PART:
            raise where.error(f"holds a {kind} part; only text is trained (the models here are text models)",
                              field=f, hint="Remove the media parts or the row, " + SKIP_HINT)
        else:
            raise where.error(f"unknown content part type '{kind}'; expected text (or reasoning)", field=f,
                              hint="Fix the record, " + SKIP_HINT)
    return opts.part_separator.join(texts), reasoning


def _weight(turn: dict, f: str, where: Where) -> int | None:
    for key in ("loss_weight", "weight"):
        v = turn.get(key)
        if v is None:
            continue
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, (int, float)) and v in (0, 1):
            return int(v)
        raise where.error(f"{key} {v!r} is not supported: a turn either carries loss (1) or not (0); "
                          "partial weights would need a weighted loss", field=f"{f}.{key}",
                          hint="Use 0 or 1, " + SKIP_HINT)
    return None


def _call(c, f: str, where: Where) -> dict:
    """One tool call in OpenAI's shape, arguments as an object when they are JSON text (the shape
    transformers' chat templates expect)."""
    if not isinstance(c, dict):
        raise where.error(f"expected a tool call object but found {describe(c)}", field=f,
                          hint="Fix the record, " + SKIP_HINT)
    fn = c.get("function") if isinstance(c.get("function"), dict) else c
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise where.error("a tool call needs the function's name", field=f, hint="Fix the record, " + SKIP_HINT)
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        try:
            parsed = json.loads(args) if args.strip() else {}
            args = parsed if isinstance(parsed, dict) else args
        except json.JSONDecodeError:
            pass
    out = {"type": "function", "function": {"name": name, "arguments": args if args is not None else {}}}
    if isinstance(c.get("id"), str):
        out["id"] = c["id"]
    return out


def _calls_from_json(value, f: str, where: Where) -> list[dict]:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise where.error(f"the function call is not JSON ({e.msg}); expected {{\"name\": ..., "
                              "\"arguments\": {...}}", field=f, hint="Fix the record, " + SKIP_HINT) from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    return [_call(c, f"{f}[{k}]" if isinstance(parsed, list) else f, where) for k, c in enumerate(calls)]


def parse_tools(value, col: str, where: Where) -> list[dict]:
    """A tools column (a list, or JSON text of one) → OpenAI's ``[{"type": "function",
    "function": {name, description, parameters}}]``, as chat templates take ``tools=``."""
    value = _maybe_json_list(value)
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise where.error(f"expected a list of tool schemas but found {describe(value)}", field=col,
                          hint="Fix the record, " + SKIP_HINT)
    out = []
    for k, t in enumerate(value):
        if not isinstance(t, dict):
            raise where.error(f"expected a tool schema object but found {describe(t)}", field=f"{col}[{k}]",
                              hint="Fix the record, " + SKIP_HINT)
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if not isinstance(fn.get("name"), str):
            raise where.error("a tool schema needs the function's name", field=f"{col}[{k}]",
                              hint="Fix the record, " + SKIP_HINT)
        out.append({"type": "function", "function": {k2: v for k2, v in fn.items() if v is not None}})
    return out


def uses_tools(record: dict) -> bool:
    """Whether a record calls tools, holds tool results or carries a tools schema."""
    return bool(record.get("tools")) or any(
        m.get("tool_calls") or m["role"] == "tool" for m in record.get("messages", ()))


def shape_of(record: dict) -> str:
    """'messages', 'prompt_completion' or 'text': the internal shape of a normalised record."""
    if "messages" in record:
        return "messages"
    if "prompt" in record:
        return "prompt_completion"
    return "text"
