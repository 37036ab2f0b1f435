"""Detect a data set's format from its columns and convert records to one internal shape.

Internal shapes (everything downstream sees only these):

* ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
  from OpenAI messages, ShareGPT conversations and alpaca (instruction [+ input] → user,
  output → assistant, optional system);
* ``{"prompt": str, "completion": str}`` from prompt/completion (or question/answer, ...);
* ``{"text": str}`` for plain text.

``data.columns`` maps internal names to the file's columns ({prompt: question}) and wins over
detection. Auto-detection records a ``reason`` the GUI shows ("columns instruction, output → alpaca").
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.data.errors import SKIP_HINT, DataError, Where, describe

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")
# Names data.columns may map (internal name → the file's column).
COLUMN_KEYS = ("messages", "conversations", "instruction", "input", "output", "system",
               "prompt", "completion", "text")
# prompt/completion pairs recognised without a mapping, in order of preference.
PC_PAIRS = (("prompt", "completion"), ("prompt", "response"), ("question", "answer"),
            ("query", "response"), ("input", "output"))
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant",
         "gpt": "assistant", "bot": "assistant", "model": "assistant", "chatgpt": "assistant"}
_EXPECTED = ("messages (a list of role/content turns), conversations (ShareGPT from/value turns), "
             "instruction + output (alpaca), prompt + completion (also question + answer, input + output) "
             "or text")


@dataclass
class Plan:
    """How to read a table: the format and which column feeds each internal field."""

    format: str
    columns: dict          # internal name → the file's column
    reason: str


# ---- detection --------------------------------------------------------------------------------

def plan_format(fmt: str, found: list[str], rows: list[dict], mapping: dict | None, source: str) -> Plan:
    """Decide the format (``fmt`` may be 'auto') and the column for each internal field."""
    mapping = _check_mapping(mapping or {}, found, source)
    taken = set(mapping.values())

    def pick(name, *aliases):
        if name in mapping:
            return mapping[name]
        return next((a for a in (name, *aliases) if a in found and a not in taken), None)

    def turn_style(col):  # "sharegpt" (from/value), "messages" (role/content) or None
        for row in rows[:50]:
            turns = _maybe_json_list(row.get(col))
            if isinstance(turns, list) and turns and isinstance(turns[0], dict):
                if "from" in turns[0] or "value" in turns[0]:
                    return "sharegpt"
                return "messages"
        return None

    candidates = {}
    for col in (pick("messages"), pick("conversations")):
        if col is not None:
            style = turn_style(col) or ("messages" if col == pick("messages") else "sharegpt")
            candidates.setdefault(style, {"messages" if style == "messages" else "conversations": col})
    instr, out = pick("instruction"), pick("output", "response")
    if instr and out:
        candidates["alpaca"] = {"instruction": instr, "output": out}
        for name, aliases in (("input", ("context",)), ("system", ())):
            col = pick(name, *aliases)
            if col and col not in (instr, out):
                candidates["alpaca"][name] = col
    if "prompt" in mapping or "completion" in mapping:
        pairs = [(pick("prompt"), pick("completion"))]
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
        return Plan(fmt, candidates[fmt], f"format {fmt} set in data.format")

    for name in ("messages", "sharegpt", "alpaca", "prompt_completion", "text"):
        if name in candidates:
            cols = candidates[name]
            if mapping:
                used = ", ".join(f"{k} ← {v}" for k, v in mapping.items())
                return Plan(name, cols, f"data.columns maps {used} → {name}")
            return Plan(name, cols, f"columns {', '.join(cols.values())} → {name}")
    example = ", ".join(f"{k}: {v}" for k, v in zip(("prompt", "completion"), found))
    raise DataError(f"cannot tell the data format from the columns {_names(found)}; expected {_EXPECTED}",
                    file=source, field="data.format",
                    hint=f"Set data.format and map your columns with data.columns, e.g. {{{example}}}.")


def _check_mapping(mapping: dict, found: list[str], source: str) -> dict:
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

def normalize(row: dict, plan: Plan, where: Where) -> dict:
    """Convert one row to the internal shape; raise DataError naming the record and field."""
    c = plan.columns
    if plan.format in ("messages", "sharegpt"):
        col = c.get("messages") or c.get("conversations")
        return {"messages": _turns(_get(row, col, where, plan), col, where)}
    if plan.format == "alpaca":
        instruction = _text(_get(row, c["instruction"], where, plan), where, c["instruction"])
        extra = _text(row.get(c["input"]), where, c["input"], required=False) if "input" in c else ""
        output = _text(_get(row, c["output"], where, plan), where, c["output"])
        messages = []
        if "system" in c:
            system = _text(row.get(c["system"]), where, c["system"], required=False)
            if system.strip():
                messages.append({"role": "system", "content": system})
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return {"messages": [*messages, {"role": "user", "content": user},
                             {"role": "assistant", "content": output}]}
    if plan.format == "prompt_completion":
        return {"prompt": _text(_get(row, c["prompt"], where, plan), where, c["prompt"]),
                "completion": _text(_get(row, c["completion"], where, plan), where, c["completion"])}
    return {"text": _text(_get(row, c["text"], where, plan), where, c["text"])}


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
    # CSV and Parquet exports often store a conversation as a JSON string.
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _turns(value, col: str, where: Where) -> list[dict]:
    value = _maybe_json_list(value)
    if not isinstance(value, (list, tuple)):
        raise where.error(f"expected a list of turns but found {describe(value)}", field=col,
                          hint="Fix the record, " + SKIP_HINT)
    out = []
    for j, turn in enumerate(value):
        f = f"{col}[{j}]"
        if not isinstance(turn, dict):
            raise where.error(f"expected a turn object but found {describe(turn)}", field=f,
                              hint="Fix the record, " + SKIP_HINT)
        # Arrow fills absent struct fields with None, so a turn may carry both key styles.
        role_key = "role" if turn.get("role") is not None else "from"
        content_key = "content" if turn.get("content") is not None or "value" not in turn else "value"
        raw_role = turn.get(role_key)
        role = ROLES.get(str(raw_role).strip().lower()) if raw_role is not None else None
        if role is None:
            raise where.error(f"unknown role {raw_role!r}; expected system, user or assistant "
                              "(or ShareGPT's human, gpt)", field=f"{f}.{role_key}",
                              hint="Fix the role, " + SKIP_HINT)
        content = turn.get(content_key)
        if isinstance(content, list):  # OpenAI content parts: keep the text parts
            if not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content
                       if not (isinstance(p, dict) and p.get("type") not in (None, "text"))):
                raise where.error("content parts must be {type: text, text: ...}", field=f"{f}.{content_key}",
                                  hint="Fix the record, " + SKIP_HINT)
            content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        out.append({"role": role, "content": _text(content, where, f"{f}.{content_key}")})
    if not any(t["role"] == "assistant" for t in out):
        raise where.error("the conversation has no assistant turn, so there is nothing to learn from it",
                          field=col, hint="Add the assistant's answer, " + SKIP_HINT)
    return out


def shape_of(record: dict) -> str:
    """'messages', 'prompt_completion' or 'text': the internal shape of a normalised record."""
    if "messages" in record:
        return "messages"
    if "prompt" in record:
        return "prompt_completion"
    return "text"
