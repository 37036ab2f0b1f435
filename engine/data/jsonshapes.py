"""The shapes a .json file comes in, read record by record with where each record starts.

* an array of objects (pandas ``orient="records"``), streamed element by element, so a preview
  of a huge file parses only what it shows;
* pandas' other ``to_json`` shapes: ``columns`` (the default: ``{column: {label: value}}``),
  ``index`` (``{label: {column: value}}``), ``split`` (``{columns, index, data}``) and ``table``
  (``{schema, data}``);
* an object of equal-length lists (``{column: [values]}``), and ``{"data": [objects]}``.

Anything else (a list of lists, as pandas' ``orient="values"`` writes) is a DataError that names
the shape and the fix. Written by hand because neither ``json`` nor ``datasets`` streams an array
or reports line numbers, and ``datasets``' JSON reader refuses pandas' dict shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from engine.data.errors import DataError, describe

# Column names that tell which axis of a pandas dict shape holds the columns.
KNOWN_COLUMNS = frozenset({
    "messages", "conversations", "instruction", "input", "output", "system", "prompt", "completion",
    "text", "question", "answer", "query", "response", "chosen", "rejected", "label", "tools", "context",
    "images", "id"})
_FIX = 'Write it with pandas\' to_json(orient="records") (a list of objects) or as JSON Lines (.jsonl).'


def iter_json_records(text: str, source: str) -> tuple[str, Iterator[tuple[object, int, int, str | None]]]:
    """(shape, records) for the text of a .json file.

    ``records`` yields ``(value, line, record, raw)``: the record (a dict when well formed), the
    1-based line where it starts (for an object shape, the line of the whole object), its 1-based
    number and, for array elements, the exact source text of the element (None otherwise).
    Raises DataError for text that is not JSON or a shape that holds no records.
    """
    i = _skip_ws(text, 0)
    if i >= len(text):
        raise DataError("the file is empty (no records)", file=source,
                        hint="Point data.path at a file with at least one example.")
    if text[i] == "[":
        return "records (an array of objects)", _iter_array(text, i, source)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        hint = "Fix the file."
        if e.msg == "Extra data":
            hint = "The file holds more than one JSON value; if it has one object per line, name it .jsonl."
        raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", file=source, line=e.lineno,
                        hint=hint) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected an array of objects or one of pandas' to_json shapes; found {describe(obj)}",
                        file=source, hint=_FIX)
    shape, rows = _rows_from_object(obj, source)
    return shape, ((row, 1, n, None) for n, row in enumerate(rows, 1))


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    return i


def _iter_array(text: str, start: int, source: str):
    decoder = json.JSONDecoder()
    line, counted = 1 + text.count("\n", 0, start), start
    i = _skip_ws(text, start + 1)
    if i < len(text) and text[i] == "]":
        _check_end(text, i + 1, source)
        return
    record = 0
    while True:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", file=source, line=e.lineno,
                            hint="Fix the file.") from None
        line += text.count("\n", counted, i)
        counted = i
        record += 1
        if record == 1 and isinstance(value, list):
            raise DataError("holds a list of lists with no column names (pandas' orient=\"values\")",
                            file=source, hint=_FIX)
        yield value, line, record, text[i:end]
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            _check_end(text, i + 1, source)
            return
        at = "the end of the file" if i >= len(text) else f"'{text[i]}'"
        raise DataError(f"not valid JSON (expected ',' or ']' after record {record}, found {at})",
                        file=source, line=1 + text.count("\n", 0, min(i, len(text))), hint="Fix the file.")


def _check_end(text: str, i: int, source: str) -> None:
    j = _skip_ws(text, i)
    if j < len(text):
        raise DataError("not valid JSON (Extra data after the array)", file=source,
                        line=1 + text.count("\n", 0, j),
                        hint="The file holds more than one JSON value; if it has one object per line, name it .jsonl.")


def _is_label(key: str) -> bool:
    return key.lstrip("-").isdigit()


def _rows_from_object(obj: dict, source: str) -> tuple[str, list]:
    """pandas' dict shapes (and two common wrappers) → (shape name, rows)."""
    if not obj:
        raise DataError("the file is empty (no records)", file=source,
                        hint="Point data.path at a file with at least one example.")
    keys = set(obj)
    lists = {k: v for k, v in obj.items() if isinstance(v, list)}
    if len(obj) == 1 and lists and all(isinstance(x, dict) for x in next(iter(lists.values()))):
        key = next(iter(lists))
        return f"an object holding the records under '{key}'", next(iter(lists.values()))
    if {"columns", "data"} <= keys <= {"columns", "data", "index"} and isinstance(obj["data"], list) \
            and isinstance(obj["columns"], list):
        cols = [str(c) for c in obj["columns"]]
        rows = []
        for n, values in enumerate(obj["data"], 1):
            if not isinstance(values, list) or len(values) != len(cols):
                raise DataError(f"pandas 'split' shape: data row {n} does not have one value per column "
                                f"({len(cols)})", file=source, record=n, hint=_FIX)
            rows.append(dict(zip(cols, values)))
        return "pandas orient=\"split\"", rows
    if keys == {"schema", "data"} and isinstance(obj["data"], list):
        schema = obj["schema"] if isinstance(obj["schema"], dict) else {}
        drop = set(schema.get("primaryKey") or []) if isinstance(schema.get("primaryKey"), list) else set()
        rows = [{k: v for k, v in r.items() if k not in drop} if isinstance(r, dict) else r for r in obj["data"]]
        return "pandas orient=\"table\"", rows
    if len(lists) == len(obj):
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) != 1:
            shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise DataError(f"the columns have different lengths ({shown})", file=source,
                            hint="Every column list must have one value per example.")
        n = next(iter(lengths.values()))
        return "columns of equal-length lists", [{k: v[i] for k, v in lists.items()} for i in range(n)]
    if all(isinstance(v, dict) for v in obj.values()):
        return _labelled(obj, source)
    odd = next(k for k, v in obj.items() if not isinstance(v, (list, dict)))
    raise DataError(f"found an object whose '{odd}' is {describe(obj[odd])}: not a list of records nor one of "
                    "pandas' to_json shapes (records, columns, index, split, table)", file=source, hint=_FIX)


def _labelled(obj: dict, source: str) -> tuple[str, list]:
    """pandas' ``columns`` ({column: {label: value}}) or ``index`` ({label: {column: value}})."""
    outer = list(obj)
    inner: dict[str, None] = {}
    for v in obj.values():
        inner.update(dict.fromkeys(v))
    outer_labels = all(_is_label(k) for k in outer)
    inner_labels = all(_is_label(k) for k in inner)
    if outer_labels != inner_labels:
        by_columns = inner_labels
    elif KNOWN_COLUMNS & set(outer):
        by_columns = True
    elif KNOWN_COLUMNS & set(inner):
        by_columns = False
    else:
        by_columns = True  # pandas' default for DataFrame.to_json
    if by_columns:
        labels = list(inner)
        rows = [{col: obj[col].get(label) for col in outer} for label in labels]
        return "pandas orient=\"columns\" (the to_json default)", rows
    return "pandas orient=\"index\"", [dict(obj[label]) for label in outer]
