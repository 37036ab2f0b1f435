"""DataError: one plain-language message that names the file, the place and what to do."""

from __future__ import annotations

from engine.errors import UserError

SKIP_HINT = "or set data.skip_bad_lines: true to skip bad lines."


class DataError(UserError):
    """A data file cannot be used as it is.

    ``str(e)`` is complete on its own, e.g. ``data/train.jsonl line 17: not valid JSON (Expecting
    ',' delimiter at column 34). Fix the line, or set data.skip_bad_lines: true to skip bad lines.``
    The parts stay available for the GUI: ``file``, ``line`` (1-based line of a .jsonl, or of a
    .json/.csv text for a parse error), ``record`` (1-based record of any other file), ``field``
    (e.g. ``messages[1].content`` or a config field such as ``data.columns``), ``problem`` and
    ``hint``.
    """

    detected = None  # tasks.PreferenceShape when the data is preference data (see tasks.py)

    def __init__(self, problem: str, *, file: str | None = None, line: int | None = None,
                 record: int | None = None, field: str | None = None, hint: str = ""):
        self.file = file
        self.line = line
        self.record = record
        self.field = field
        self.problem = problem
        self.hint = hint
        super().__init__(self._compose())

    def to_dict(self) -> dict:
        """The parts as plain values (stored with a data set's rows, sent to the studio)."""
        return {"file": self.file, "line": self.line, "record": self.record, "field": self.field,
                "problem": self.problem, "hint": self.hint}

    @classmethod
    def from_dict(cls, d: dict) -> DataError:
        return cls(d.get("problem", ""), file=d.get("file"), line=d.get("line"), record=d.get("record"),
                   field=d.get("field"), hint=d.get("hint", ""))

    def __reduce__(self):  # keyword-only arguments: pickle (worker processes) through the parts
        return (_rebuild, (self.to_dict(),))

    @property
    def location(self) -> str:
        """``line 17`` / ``record 5``, followed by ``, field x`` when known ('' when neither)."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        elif self.record is not None:
            parts.append(f"record {self.record}")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def _compose(self) -> str:
        head = " ".join(p for p in (self.file, self.location) if p)
        text = f"{head}: {self.problem}" if head else self.problem
        text = text.rstrip()
        if not text.endswith((".", "?", "!", ")")):
            text += "."
        elif text.endswith(")"):
            text += "."
        if self.hint:
            text += " " + self.hint
        return text


def _rebuild(d: dict) -> DataError:
    return DataError.from_dict(d)


class Where:
    """Where a record came from: the file as the user wrote it and a line or record number."""

    __slots__ = ("file", "line", "record", "line_hint")

    def __init__(self, file: str, line: int | None = None, record: int | None = None):
        self.file = file
        self.line = line
        self.record = record
        self.line_hint = None  # the line a record starts on, where messages name records (CSV, JSON)

    def error(self, problem: str, field: str | None = None, hint: str = "") -> DataError:
        return DataError(problem, file=self.file, line=self.line, record=self.record, field=field, hint=hint)

    def __str__(self) -> str:
        return f"line {self.line}" if self.line is not None else f"record {self.record}"

    def __repr__(self) -> str:
        return f"Where({self.file!r}, {self})"


def describe(value) -> str:
    """How a JSON value is called in messages: 'a list', 'the number 42', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the value {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
