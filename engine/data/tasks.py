"""Columns that change what the model learns, and the task they imply.

Supervised fine-tuning (SFT) learns the assistant's answers. Some data sets mean something else:

* preference pairs (``chosen``/``rejected``): the model should prefer one answer over another;
  read as SFT, the prompt history would be trained and both answers ignored;
* a boolean ``label`` (KTO's unpaired preferences): read as SFT, the answers marked undesirable
  would be trained as targets;
* ``tools`` the chat template cannot render: the calls would be trained without their schema;
* ``images`` (or audio, video): the models here read text only.

``refuse_unmapped`` raises one DataError before any weights load unless the user mapped the
column (``data.columns``), e.g. ``{answer: chosen}`` to train SFT on the preferred answers, or
``{label: label}`` to train only the rows labelled true. ``detect_preference`` names the exact
shape of preference data, so that preference training can read it; ``preference_record`` converts
one row to TRL's conversational form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.data.errors import DataError, Where
from engine.data.formats import TOOLS_COLUMNS, NormOptions, _maybe_json_list, _turns, clean_text

PREFERENCE_TRAINING = "preference training (train.task: dpo, orpo or simpo)"
KTO_TRAINING = "unpaired preference training (train.task: kto)"
MEDIA_COLUMNS = ("images", "image", "videos", "video", "audios", "audio")
PROMPT_ALIASES = ("prompt", "question", "query")
# Every shape detect_preference names (PreferenceShape.shape).
SHAPES = {
    "prompt_chosen_rejected": "a prompt with chosen and rejected answers",
    "chosen_rejected": "chosen and rejected conversations that share their prompt (an implicit prompt)",
    "messages_chosen_rejected": "messages with chosen and rejected final assistant turns",
    "sharegpt_chosen_rejected": "ShareGPT conversations with chosen and rejected answers",
    "alpaca_chosen_rejected": "alpaca instructions with chosen and rejected outputs",
    "kto_prompt_completion": "prompt/completion pairs with a boolean label (KTO)",
    "kto_messages": "conversations with a boolean label (KTO)",
}


@dataclass(frozen=True)
class PreferenceShape:
    """What preference data looks like, for preference training to read it.

    ``task``: ``paired`` (chosen/rejected: DPO, ORPO, SimPO, ...) or ``unpaired`` (KTO: one
    completion and a boolean label). ``shape``: a key of SHAPES. ``columns``: role → the file's
    column, roles among prompt, chosen, rejected, completion, label, messages, conversations,
    instruction, input, system. ``style``: how the answers are written: ``text`` (a string),
    ``turn`` (one message object: role/content or ShareGPT from/value) or ``messages`` (a list of
    messages). ``prompt_style``: the same for the prompt (``none`` for an implicit prompt).
    ``implicit_prompt``: the prompt is the shared beginning of chosen and rejected.
    ``sft_mapping``: the data.columns mapping that trains SFT on the preferred answers instead.
    """

    task: str
    shape: str
    columns: dict
    style: str
    prompt_style: str
    implicit_prompt: bool
    reason: str
    sft_mapping: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _style(value) -> str:
    value = _maybe_json_list(value)
    if isinstance(value, list):
        return "messages"
    if isinstance(value, dict):
        return "turn"
    return "text"


def _first(rows: list[dict], col: str):
    return next((r[col] for r in rows if r.get(col) is not None), None)


def _is_bool_column(rows: list[dict], col: str) -> bool:
    values = [r.get(col) for r in rows[:200] if r.get(col) is not None]
    return bool(values) and all(isinstance(v, bool) for v in values)


def detect_preference(found: list[str], rows: list[dict]) -> PreferenceShape | None:
    """The preference shape of a table with columns ``found`` (``rows``: a sample), or None."""
    has = set(found)
    if {"chosen", "rejected"} <= has:
        style = _style(_first(rows, "chosen"))
        cols = {"chosen": "chosen", "rejected": "rejected"}
        if "system" in has:
            cols["system"] = "system"
        if "conversations" in has:
            cols["conversations"] = "conversations"
            return PreferenceShape("paired", "sharegpt_chosen_rejected", cols, style, "messages", False,
                                   "columns conversations, chosen, rejected",
                                   {"conversations": "conversations", "assistant": "chosen"})
        if "messages" in has:
            cols["messages"] = "messages"
            return PreferenceShape("paired", "messages_chosen_rejected", cols, style, "messages", False,
                                   "columns messages, chosen, rejected", {"messages": "messages", "assistant": "chosen"})
        if "instruction" in has:
            cols["instruction"] = "instruction"
            mapping = {"instruction": "instruction", "output": "chosen"}
            if "input" in has:
                cols["input"] = mapping["input"] = "input"
            return PreferenceShape("paired", "alpaca_chosen_rejected", cols, style, "text", False,
                                   "columns instruction, chosen, rejected", mapping)
        prompt = next((a for a in PROMPT_ALIASES if a in has), None)
        if prompt is not None:
            cols["prompt"] = prompt
            pstyle = _style(_first(rows, prompt))
            return PreferenceShape("paired", "prompt_chosen_rejected", cols, style, pstyle, False,
                                   f"columns {prompt}, chosen, rejected", {"prompt": prompt, "completion": "chosen"})
        return PreferenceShape("paired", "chosen_rejected", cols, style, "none", True,
                               "columns chosen, rejected and no prompt column",
                               {"messages": "chosen"} if style == "messages" else {"text": "chosen"})
    if "label" in has and _is_bool_column(rows, "label"):
        if "completion" in has:
            prompt = next((a for a in PROMPT_ALIASES if a in has), None)
            cols = {"completion": "completion", "label": "label", **({"prompt": prompt} if prompt else {})}
            return PreferenceShape("unpaired", "kto_prompt_completion", cols, _style(_first(rows, "completion")),
                                   _style(_first(rows, prompt)) if prompt else "none", prompt is None,
                                   "columns " + ", ".join(cols.values()),
                                   {**({"prompt": prompt} if prompt else {}), "completion": "completion",
                                    "label": "label"})
        conv = next((c for c in ("messages", "conversations") if c in has), None)
        if conv is not None:
            return PreferenceShape("unpaired", "kto_messages", {conv: conv, "label": "label"}, "messages",
                                   "messages", False, f"columns {conv}, label", {conv: conv, "label": "label"})
    return None


def task_for_data(kinds: list[str | None]) -> str | None:
    """The train.task a data set's sources serve, from each source's kind: ``paired``
    (chosen/rejected: ``dpo``), ``unpaired`` (labelled single answers, or pairs mixed with them:
    ``kto``, whose trainer splits pairs), ``sft`` (supervised examples: ``sft``). None when they
    cannot serve one task together (supervised and preference sources mixed) or a kind is unknown
    (None: a source that cannot be read)."""
    found = set(kinds)
    if not found or None in found or ("sft" in found and len(found) > 1):
        return None
    if found == {"sft"}:
        return "sft"
    return "kto" if "unpaired" in found else "dpo"


def _mapping_text(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"


def refuse_unmapped(found: list[str], rows: list[dict], mapping: dict, source: str, caps=None,
                    skip_tools: bool = False) -> None:
    """Raise a DataError (field data.columns, ``.detected`` set) for a column that changes what is
    learned and that ``mapping`` (data.columns) does not decide. See the module docstring.
    ``skip_tools`` (data.skip_bad_lines): a tools column the template cannot render is not refused;
    the rows that use tools are skipped one by one instead."""
    used = set(mapping.values())
    shape = detect_preference(found, rows)
    if shape is not None and shape.task == "paired" and "chosen" not in used:
        err = DataError(
            f"this is preference data ({SHAPES[shape.shape]}: {shape.reason}), not supervised examples; "
            "read as SFT it would learn the prompts and ignore both answers", file=source, field="data.columns",
            hint=f"Train it with {PREFERENCE_TRAINING}, or train SFT on the chosen answers with "
                 f"data.columns: {_mapping_text(shape.sft_mapping)}.")
        err.detected = shape
        raise err
    if "label" in found and "label" not in mapping and _is_bool_column(rows, "label"):
        hint_map = shape.sft_mapping if shape is not None else {"label": "label"}
        err = DataError(
            "the column label holds true/false: unpaired preference data (KTO), where rows labelled false are "
            "answers to avoid; read as SFT they would be trained as targets", file=source, field="data.columns",
            hint=f"Train it with {KTO_TRAINING}, or train SFT on the rows labelled true only with "
                 f"data.columns: {_mapping_text(hint_map)}.")
        err.detected = shape
        raise err
    media = [c for c in MEDIA_COLUMNS if c in found and c not in used]
    if media and not mapping:
        raise DataError(f"the column {media[0]} holds media; the models here are text models, so it cannot be "
                        "trained and would be dropped", file=source, field="data.columns",
                        hint="Map the text columns with data.columns (e.g. {messages: messages}) to train on the "
                             f"text alone; {media[0]} is then listed as ignored.")
    if caps is not None and not caps.tools and not skip_tools:
        tools = next((c for c in TOOLS_COLUMNS if c in found and c not in used), None)
        if tools is not None and "tools" not in mapping:
            raise DataError(f"the column {tools} holds tool schemas, but {caps.tools_problem()}", file=source,
                            field="data.columns", hint=caps.tools_hint())


def preference_record(row: dict, shape: PreferenceShape, where: Where | None = None) -> dict:
    """One row of preference data in TRL's conversational form.

    Paired: ``{"prompt": [messages], "chosen": [assistant messages], "rejected": [...]}``; for
    text answers with an implicit prompt, ``{"prompt": str, "chosen": str, "rejected": str}``
    (the shared beginning split off). Unpaired: ``{"prompt": [...], "completion": [...],
    "label": bool}``. Raises DataError naming the record for a row that does not fit the shape.
    """
    where = where or Where("data")
    c = shape.columns
    opts = NormOptions()

    def answer(col):
        v = row.get(col)
        style = _style(v)
        if style == "text":
            if not isinstance(v, str):
                raise where.error("expected text or a message", field=col)
            return [{"role": "assistant", "content": clean_text(v)}]
        v = _maybe_json_list(v)
        return _turns(v if isinstance(v, list) else [v], col, where, opts, need_answer=False)

    def prompt_turns() -> list[dict]:
        out = []
        if "system" in c and isinstance(row.get(c["system"]), str) and row[c["system"]].strip():
            out.append({"role": "system", "content": row[c["system"]]})
        for key in ("conversations", "messages"):
            if key in c and key != "label":
                return out + _turns(row.get(c[key]), c[key], where, opts, need_answer=False)
        if "instruction" in c:
            text = row.get(c["instruction"]) or ""
            extra = row.get(c["input"]) if "input" in c else ""
            return out + [{"role": "user", "content": f"{text}\n\n{extra}" if extra else text}]
        if "prompt" in c:
            p = row.get(c["prompt"])
            if _style(p) == "text":
                return out + [{"role": "user", "content": clean_text(p or "")}]
            return out + _turns(p, c["prompt"], where, opts, need_answer=False)
        return out

    if shape.task == "unpaired":
        if shape.shape == "kto_messages":
            conv = next(k for k in c if k != "label")
            turns = _turns(row.get(c[conv]), c[conv], where, opts)
            cut = max(i for i, t in enumerate(turns) if t["role"] != "assistant") + 1
            return {"prompt": turns[:cut], "completion": turns[cut:], "label": bool(row.get(c["label"]))}
        return {"prompt": prompt_turns(), "completion": answer(c["completion"]), "label": bool(row.get(c["label"]))}
    if shape.implicit_prompt:
        chosen, rejected = row.get(c["chosen"]), row.get(c["rejected"])
        if shape.style == "text":
            k = 0
            while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
                k += 1
            return {"prompt": chosen[:k], "chosen": chosen[k:], "rejected": rejected[k:]}
        ct = _turns(chosen, c["chosen"], where, opts)
        rt = _turns(rejected, c["rejected"], where, opts)
        k = 0
        while k < min(len(ct), len(rt)) and ct[k] == rt[k]:
            k += 1
        return {"prompt": ct[:k], "chosen": ct[k:], "rejected": rt[k:]}
    return {"prompt": prompt_turns(), "chosen": answer(c["chosen"]), "rejected": answer(c["rejected"])}
