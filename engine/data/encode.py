"""The one ``Dataset.map`` step: raw records → token ids, labels and what the report needs.

``Encoder`` is a picklable callable for ``Dataset.map(batched=True, with_indices=True)``. Each
input record becomes one output row (or, with ``long_examples: chunk``, one row per window of a
long text), whatever happened to it, so that the report can name every record by its line:

* ``input_ids``, ``labels`` (-100 where no loss), ``length``: the example as trained (empty for a
  record that is not trained);
* ``status`` (STATUS): ok, truncated, dropped_long (``data.long_examples: drop``),
  dropped_untrained (no answer token left within max_length), skipped (a bad record: ``error``
  holds its DataError as JSON) or filtered (``label`` false under a ``label`` mapping);
* ``row`` (the record's 0-based index in the file), ``line`` (its line, or record number where
  records are named by number), ``chunk`` (window index), ``full_length`` (tokens before
  truncation), ``n_trained`` (tokens carrying loss), turn counts per role, ``issues`` ("code|detail"
  strings: empty turns, prompts without an answer, unfilled ``{{placeholders}}``), ``hash`` (of the
  normalised record, for exact duplicates) and ``extra_keys`` (keys outside the detected columns).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from engine.data.errors import DataError, Where
from engine.data.formats import NormOptions, Plan, label_of, normalize
from engine.data.readers import parse_jsonl
from engine.data.render import PLACEHOLDER, render, tokenize_rendered

IGNORE_INDEX = -100  # the label that carries no loss (PyTorch's cross_entropy ignore_index)
STATUS = ("ok", "truncated", "dropped_long", "dropped_untrained", "skipped", "filtered")
OK, TRUNCATED, DROPPED_LONG, DROPPED_UNTRAINED, SKIPPED, FILTERED = range(len(STATUS))
LONG_MODES = ("truncate", "drop", "chunk")
ROLE_COLUMNS = ("system", "user", "assistant", "tool")


def features():
    """The Arrow schema of an encoded row (fixed, so empty batches and nulls need no inference)."""
    from datasets import Features, List, Value

    return Features({
        "input_ids": List(Value("int32")), "labels": List(Value("int32")), "length": Value("int32"),
        "full_length": Value("int32"), "n_trained": Value("int32"), "status": Value("int8"),
        "row": Value("int64"), "line": Value("int64"), "chunk": Value("int32"), "error": Value("string"),
        **{f"n_{r}": Value("int16") for r in ROLE_COLUMNS},
        "issues": List(Value("string")), "hash": Value("int64"), "extra_keys": List(Value("string")),
    })


@dataclass
class RenderConfig:
    """The data settings rendering reads (a picklable stand-in for DataConfig)."""

    system_prompt: str | None = None
    train_on_prompt: bool = False
    replacements: dict = field(default_factory=dict)
    reasoning: str = "auto"


@dataclass
class EncodeSpec:
    """Everything a worker needs besides the tokenizer."""

    plan: Plan
    source: str
    unit: str                        # line | record
    typed: bool                      # the raw rows are the file's own columns (else __raw)
    known_columns: list[str]         # columns the plan reads (others are counted per record as extra keys)
    limit: int                       # tokens per example (max_length minus virtual tokens)
    long_mode: str = "truncate"
    part_separator: str = ""
    render_cfg: RenderConfig = field(default_factory=RenderConfig)
    row_ids: list[int] | None = None  # raw row of each input row when the input is a selection


def _hash(record: dict) -> int:
    """64 bits of BLAKE2b over the record's canonical JSON, as a signed int64 (an Arrow column)."""
    data = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def analyse(record: dict) -> tuple[dict, list[str]]:
    """(turn counts per role, issues) of one normalised record (before placeholders are filled)."""
    counts = dict.fromkeys(ROLE_COLUMNS, 0)
    issues = []
    texts = []
    if "messages" in record:
        msgs = record["messages"]
        for i, m in enumerate(msgs):
            counts[m["role"]] = counts.get(m["role"], 0) + 1
            if not m["content"].strip() and not m.get("tool_calls"):
                issues.append(f"empty_turn|{m['role']} turn {i + 1} is " + ("empty" if not m["content"] else
                                                                           "whitespace only"))
            texts.append(m["content"])
            if m.get("reasoning"):
                texts.append(m["reasoning"])
        last_answer = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
        if any(m["role"] == "user" for m in msgs[last_answer + 1:]):
            issues.append(f"no_answer|the last user turn (turn {len(msgs)}) has no answer after it")
    elif "prompt" in record:
        counts["user"], counts["assistant"] = 1, 1
        if not record["prompt"].strip():
            issues.append("empty_turn|the prompt is empty")
        if not record["completion"].strip():
            issues.append("no_answer|the completion is empty")
        texts += [record["prompt"], record["completion"]]
    else:
        if not record["text"].strip():
            issues.append("empty_turn|the text is empty")
        texts.append(record["text"])
    for name in dict.fromkeys(m.group(1) for t in texts if "{{" in t for m in PLACEHOLDER.finditer(t)):
        issues.append(f"placeholder|{name}")
    return counts, issues


class Encoder:
    """Raw batch → encoded rows (see the module docstring). Picklable for ``num_proc`` workers."""

    def __init__(self, spec: EncodeSpec, tokenizer):
        self.spec = spec
        self.tokenizer = tokenizer
        self._caps = None

    def __getstate__(self):
        return {"spec": self.spec, "tokenizer": self.tokenizer}

    def __setstate__(self, state):
        self.spec, self.tokenizer, self._caps = state["spec"], state["tokenizer"], None

    @property
    def caps(self):
        if self._caps is None:
            from engine.data.template import template_caps

            self._caps = template_caps(self.tokenizer)
        return self._caps

    def _rows(self, batch: dict, indices: list[int]):
        s = self.spec
        if s.typed:
            names = [n for n in batch if not n.startswith("__")]
            for k, i in enumerate(indices):
                row_id = s.row_ids[i] if s.row_ids is not None else i
                where = Where(s.source, record=row_id + 1)
                yield row_id, where, {n: batch[n][k] for n in names}, None
            return
        for k, i in enumerate(indices):
            row_id = s.row_ids[i] if s.row_ids is not None else i
            line, record = batch["__line"][k], batch["__record"][k]
            where = Where(s.source, line=line) if s.unit == "line" else Where(s.source, record=record)
            where.line_hint = line
            if batch["__error"][k]:
                yield row_id, where, None, DataError.from_dict(json.loads(batch["__error"][k]))
                continue
            obj, err = parse_jsonl(batch["__raw"][k], where, batch["__offset"][k] or 0)
            yield row_id, where, obj, err

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        s = self.spec
        out: dict[str, list] = {k: [] for k in features()}
        known = set(s.known_columns)
        opts = NormOptions(part_separator=s.part_separator)
        pending = []  # (meta, rendered) waiting to be tokenized together
        for row_id, where, obj, err in self._rows(batch, indices):
            meta = {"row": row_id, "line": where.line if where.line is not None else where.record,
                    "extra": [] if obj is None or s.typed else [str(k) for k in obj if k not in known],
                    "counts": dict.fromkeys(ROLE_COLUMNS, 0), "issues": [], "hash": 0}
            if err is None:
                try:
                    record = normalize(obj, s.plan, where, opts)
                    meta["counts"], meta["issues"] = analyse(record)
                    meta["hash"] = _hash(record)
                    if label_of(obj, s.plan, where) is False:
                        self._emit(out, meta, FILTERED)
                        continue
                    rendered = render(record, self.tokenizer, s.render_cfg, where, self.caps)
                except DataError as e:
                    err = e
            if err is not None:
                self._emit(out, meta, SKIPPED, error=err)
                continue
            meta["text"] = "text" in record
            pending.append((meta, rendered))
        if pending:
            encoded = tokenize_rendered([r for _, r in pending], self.tokenizer, want_offsets=False)
            for (meta, _), enc in zip(pending, encoded):
                self._finish(out, meta, enc.ids, enc.flags)
        return out

    def _finish(self, out: dict, meta: dict, ids: list[int], flags: list[bool]) -> None:
        import numpy as np

        limit, mode = self.spec.limit, self.spec.long_mode
        # numpy per example: these run for every token of every record.
        ids = np.asarray(ids, dtype=np.int32)
        trained = np.asarray(flags, dtype=bool)
        labels = np.where(trained, ids, np.int32(IGNORE_INDEX)).astype(np.int32)
        n = len(ids)
        if mode == "chunk" and meta["text"] and n > limit:
            for c, start in enumerate(range(0, n, limit)):
                if n - start < 2:  # one token teaches nothing (nothing predicts it)
                    continue
                self._emit(out, meta, OK, ids[start:start + limit], labels[start:start + limit],
                           trained[start:start + limit], full=n, chunk=c)
            return
        status = OK
        if n > limit:
            if mode == "drop":
                self._emit(out, meta, DROPPED_LONG, full=n)
                return
            ids, labels, trained, status = ids[:limit], labels[:limit], trained[:limit], TRUNCATED
        # labels[0] never carries loss (nothing predicts the first token), so it does not count.
        if not trained[1:].any():
            self._emit(out, meta, DROPPED_UNTRAINED, full=n)
            return
        self._emit(out, meta, status, ids, labels, trained, full=n)

    @staticmethod
    def _emit(out: dict, meta: dict, status: int, ids=None, labels=None, trained=(), full: int = 0, chunk: int = 0,
              error: DataError | None = None) -> None:
        import numpy as np

        # A record not trained keeps no tokens; an empty int32 array, so the batch has one type.
        empty = np.zeros(0, dtype=np.int32)
        ids = empty if ids is None else ids
        out["input_ids"].append(ids)
        out["labels"].append(empty if labels is None else labels)
        out["length"].append(len(ids))
        out["full_length"].append(full)
        out["n_trained"].append(int(sum(trained)) if not hasattr(trained, "sum") else int(trained.sum()))
        out["status"].append(status)
        out["row"].append(meta["row"])
        out["line"].append(meta["line"])
        out["chunk"].append(chunk)
        out["error"].append(json.dumps(error.to_dict(), ensure_ascii=False) if error is not None else None)
        for r in ROLE_COLUMNS:
            out[f"n_{r}"].append(meta["counts"].get(r, 0))
        out["issues"].append(meta["issues"] if chunk == 0 else [])
        out["hash"].append(meta["hash"])
        out["extra_keys"].append(meta["extra"] if chunk == 0 else [])
