"""Read a data file into plain rows (one dict per record), each with where it came from.

Supported: .jsonl/.ndjson, .json (an array of objects, or an object of equal-length lists),
.csv/.tsv, .parquet, .arrow (Arrow IPC file or stream, as pyarrow and datasets write them) and a
folder saved with ``datasets``' ``save_to_disk`` (a Dataset, or a DatasetDict whose 'train' split
is used and whose 'validation'/'test' split becomes the validation set).

Every failure is a DataError naming the file and the line (.jsonl) or record (others). With
``skip_bad_lines`` a record-level failure is collected in ``Table.skipped`` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.errors import SKIP_HINT, DataError, Where, describe

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".arrow")
VALIDATION_SPLITS = ("validation", "valid", "val", "eval", "dev", "test")
_BOM = b"\xef\xbb\xbf"
# The repository root: the default data.path (resources/demo/...) must work from any folder.
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Table:
    rows: list[dict]
    wheres: list[Where]
    source: str                       # the path as the user wrote it (messages quote this)
    skipped: list[DataError] = field(default_factory=list)
    validation: Table | None = None   # a DatasetDict's validation split, if it has one

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows[:1000]:
            for k in row:
                seen.setdefault(str(k), None)
        return list(seen)


def resolve_path(path: str, base_dir=None) -> Path:
    """Find ``path``: absolute; else relative to base_dir (the run file's folder), the current
    folder, then the repository (so the bundled ``resources/demo/...`` works from anywhere)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path(base_dir) / p] if base_dir is not None else []
        candidates += [Path.cwd() / p, _REPO_ROOT / p]
    for c in candidates:
        if c.exists():
            return c
    looked = ", ".join(dict.fromkeys(str(c.resolve()) for c in candidates))
    raise DataError(f"file not found (looked in {looked})", file=str(path),
                    hint="Check data.path (relative paths start from the run file's folder).")


def read_table(path: str, base_dir=None, skip_bad_lines: bool = False) -> Table:
    """Read ``path`` (a file or a saved dataset folder) into a Table."""
    if not str(path or "").strip():
        raise DataError("no training data given", field="data.path",
                        hint="Set data.path to a .jsonl, .json, .csv, .parquet or .arrow file.")
    p = resolve_path(str(path), base_dir)
    if p.is_dir():
        table = _read_saved_dataset(p, str(path))
    else:
        suffix = p.suffix.lower()
        reader = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json,
                  ".csv": _read_csv, ".tsv": _read_csv, ".parquet": _read_parquet,
                  ".arrow": _read_arrow}.get(suffix)
        if reader is None:
            raise DataError(f"unsupported file type '{suffix or p.name}'", file=str(path),
                            hint=f"Use one of {', '.join(SUFFIXES)}, or a folder saved with "
                                 "datasets' save_to_disk.")
        if p.stat().st_size == 0:
            raise _empty(str(path))
        table = reader(p, str(path), skip_bad_lines)
    if not table.rows:
        if table.skipped:
            first = table.skipped[0]
            raise DataError(f"no usable records: all {len(table.skipped)} were bad (first: "
                            f"{first.location}: {first.problem})", file=str(path),
                            hint="Fix the file; see the first bad record above.")
        raise _empty(str(path))
    return table


def _empty(source: str) -> DataError:
    return DataError("the file is empty (no records)", file=source,
                     hint="Point data.path at a file with at least one example.")


def _fail(err: DataError, skipped: list[DataError], skip_bad_lines: bool) -> None:
    if not skip_bad_lines:
        raise err
    skipped.append(err)


# ---- text files -------------------------------------------------------------------------------

def _read_jsonl(p: Path, source: str, skip_bad_lines: bool) -> Table:
    data = p.read_bytes()
    rows, wheres, skipped = [], [], []
    offset = 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        start, offset = offset, offset + len(raw) + 1
        if lineno == 1 and raw.startswith(_BOM):  # editors on Windows add one; it is not an error
            raw, start = raw[len(_BOM):], start + len(_BOM)
        where = Where(source, line=lineno)
        # Errors are raised outside the except blocks so that no decoder traceback is chained.
        try:
            text, err = raw.decode("utf-8"), None
        except UnicodeDecodeError as e:
            err = where.error(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset {start + e.start} "
                              "of the file)", hint="Save the file as UTF-8, " + SKIP_HINT)
        if err is not None:
            _fail(err, skipped, skip_bad_lines)
            continue
        text = text.strip()
        if not text:
            continue  # blank lines (a trailing newline, spacing) are harmless
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            err = where.error(f"not valid JSON ({e.msg} at column {e.colno})", hint="Fix the line, " + SKIP_HINT)
        if err is not None:
            _fail(err, skipped, skip_bad_lines)
            continue
        if not isinstance(obj, dict):
            _fail(where.error(f"expected a JSON object such as {{\"text\": \"...\"}}, found {describe(obj)}",
                              hint="Each line must hold one object, " + SKIP_HINT), skipped, skip_bad_lines)
            continue
        rows.append(obj)
        wheres.append(where)
    return Table(rows, wheres, source, skipped)


def _decode(p: Path, source: str) -> str:
    """Decode a whole file as UTF-8; on failure name the line and the byte offset."""
    data = p.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start})",
                        file=source, line=line, hint="Save the file as UTF-8.") from None


def _read_json(p: Path, source: str, skip_bad_lines: bool) -> Table:
    text = _decode(p, source)
    if not text.strip():
        raise _empty(source)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        hint = "Fix the file."
        if e.msg == "Extra data":
            hint = "The file holds more than one JSON value; if it has one object per line, name it .jsonl."
        raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", file=source, line=e.lineno,
                        hint=hint) from None
    if isinstance(obj, dict):
        obj = _rows_from_object(obj, source)
    if not isinstance(obj, list):
        raise DataError(f"expected an array of objects, or an object of equal-length lists; found {describe(obj)}",
                        file=source, hint="Reshape the file, or save it as .jsonl with one object per line.")
    rows, wheres, skipped = [], [], []
    for i, item in enumerate(obj, 1):
        where = Where(source, record=i)
        if not isinstance(item, dict):
            _fail(where.error(f"expected an object, found {describe(item)}", hint="Fix the record, " + SKIP_HINT),
                  skipped, skip_bad_lines)
            continue
        rows.append(item)
        wheres.append(where)
    return Table(rows, wheres, source, skipped)


def _rows_from_object(obj: dict, source: str):
    """{"data": [...]} → that list; {"col": [...], ...} (columns) → a list of rows."""
    lists = {k: v for k, v in obj.items() if isinstance(v, list)}
    if len(obj) == 1 and lists and all(isinstance(x, dict) for x in next(iter(lists.values()))):
        return next(iter(lists.values()))
    if not obj or len(lists) != len(obj):
        return obj  # not columnar: the caller reports what it found
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise DataError(f"the columns have different lengths ({shown})", file=source,
                        hint="Every column list must have one value per example.")
    n = next(iter(lengths.values()))
    return [{k: v[i] for k, v in lists.items()} for i in range(n)]


def _read_csv(p: Path, source: str, skip_bad_lines: bool) -> Table:
    import csv
    import io

    text = _decode(p, source)
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = reader.fieldnames
    except csv.Error as e:
        raise DataError(f"not valid CSV ({e})", file=source, line=1, hint="Fix the header line.") from None
    if not header:
        raise _empty(source)
    rows, wheres, skipped = [], [], []
    i = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"not valid CSV ({e})", file=source, line=reader.line_num,
                            hint="Fix the quoting on that line.") from None
        i += 1
        where = Where(source, record=i)
        if None in row:  # DictReader files surplus values under the key None
            _fail(where.error(f"has more values than the {len(header)} columns of the header",
                              hint="Quote values that contain the delimiter, " + SKIP_HINT),
                  skipped, skip_bad_lines)
            continue
        missing = [k for k, v in row.items() if v is None]
        if missing:
            _fail(where.error(f"has fewer values than the {len(header)} columns of the header "
                              f"(no {', '.join(missing)})", hint="Fix the record, " + SKIP_HINT),
                  skipped, skip_bad_lines)
            continue
        rows.append(row)
        wheres.append(where)
    return Table(rows, wheres, source, skipped)


# ---- Arrow-based files ------------------------------------------------------------------------

def _table_from_arrow(arrow_table, source: str) -> Table:
    rows = arrow_table.to_pylist()
    return Table(rows, [Where(source, record=i) for i in range(1, len(rows) + 1)], source)


def _read_parquet(p: Path, source: str, skip_bad_lines: bool) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return _table_from_arrow(pq.read_table(p), source)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file ({e})", file=source,
                        hint="Check that the file was written completely.") from None


def _read_arrow(p: Path, source: str, skip_bad_lines: bool) -> Table:
    import pyarrow as pa

    # datasets writes the streaming IPC format; pyarrow's feather/IPC writer the file format.
    try:
        with pa.memory_map(str(p)) as src:
            try:
                table = pa.ipc.open_file(src).read_all()
            except pa.ArrowInvalid:
                src.seek(0)
                table = pa.ipc.open_stream(src).read_all()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Arrow file ({e})", file=source,
                        hint="Write it with pyarrow's IPC writer or datasets, or convert it to .parquet.") from None
    return _table_from_arrow(table, source)


def _read_saved_dataset(p: Path, source: str) -> Table:
    if not ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        raise DataError("is a folder but not a dataset saved with datasets' save_to_disk "
                        "(no dataset_dict.json or state.json in it)", file=source,
                        hint="Point data.path at a data file, or at a folder written by save_to_disk.")
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # datasets raises several types for a damaged folder
        raise DataError(f"could not load the saved dataset ({e})", file=source,
                        hint="Save it again with save_to_disk.") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" in ds:
            train_name = "train"
        elif len(splits) == 1:
            train_name = splits[0]
        else:
            raise DataError(f"the saved DatasetDict has no 'train' split (splits: {', '.join(splits)})",
                            file=source, hint="Save the training split under the name 'train'.")
        train = _from_dataset(ds[train_name], f"{source} (split {train_name})")
        val_name = next((s for s in VALIDATION_SPLITS if s in ds and s != train_name), None)
        if val_name is not None:
            train.validation = _from_dataset(ds[val_name], f"{source} (split {val_name})")
        return train
    return _from_dataset(ds, source)


def _from_dataset(ds, source: str) -> Table:
    rows = ds.to_list()
    return Table(rows, [Where(source, record=i) for i in range(1, len(rows) + 1)], source)
