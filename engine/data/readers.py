"""Read a data file into records, each with where it came from.

Supported: .jsonl/.ndjson, .json (an array of objects or one of pandas' to_json shapes, see
jsonshapes.py), .csv/.tsv, .parquet, .arrow (Arrow IPC file or stream, as pyarrow and datasets
write them), .txt/.md (plain text, one record per document, paragraph or line: ``data.sample_by``)
and a folder saved with ``datasets``' ``save_to_disk`` (a Dataset, or a DatasetDict whose 'train'
split is used and whose 'validation'/'test' split becomes the validation set).

Two ways in:

* ``iter_rows(...)`` streams ``Row``s in file order and reads no further than asked: the preview
  and the progressive statistics use it, so the first examples of a huge file show at once.
* ``open_raw(...)`` turns the whole file into a memory-mapped Arrow ``datasets.Dataset`` in the
  data cache (see cache.py): one row per record. Text files keep each record's source text in a
  ``__raw`` column (bytes) with its line, record number and byte offset, because real files
  change type from record to record (a ``content`` that is text here and a list of parts there)
  and one Arrow schema cannot hold them; the JSON is parsed in ``Dataset.map`` workers, in
  parallel. Parquet, Arrow and saved datasets already have one schema and are used as they are.

Every problem is a DataError naming the file and the line (.jsonl, .txt) or record (others); a
record-level problem found while reading is kept with the record (``__error``), so that it is
reported in line order with the problems found later, and skipped with ``data.skip_bad_lines``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.errors import SKIP_HINT, DataError, Where, describe

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt", ".md")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
VALIDATION_SPLITS = ("validation", "valid", "val", "eval", "dev", "test")
SAMPLE_BY = ("document", "paragraph", "line")
SAMPLE_ROWS = 1000          # records parsed up front for format detection
_BATCH = 4096               # records per Arrow record batch written
_BOM = b"\xef\xbb\xbf"
# The repository root: the default data.path (resources/demo/...) must work from any folder.
_REPO_ROOT = Path(__file__).resolve().parents[2]
RAW_COLUMNS = ("__raw", "__line", "__record", "__offset", "__error")


# ---- paths -----------------------------------------------------------------------------------

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


def kind_of(p: Path, source: str) -> str:
    """jsonl | json | csv | tsv | parquet | arrow | text | saved (a save_to_disk folder)."""
    if p.is_dir():
        if not ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
            raise DataError("is a folder but not a dataset saved with datasets' save_to_disk "
                            "(no dataset_dict.json or state.json in it)", file=source,
                            hint="Point data.path at a data file, or at a folder written by save_to_disk.")
        return "saved"
    suffix = p.suffix.lower()
    kind = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
            ".parquet": "parquet", ".arrow": "arrow"}.get(suffix)
    if kind is None and suffix in TEXT_SUFFIXES:
        kind = "text"
    if kind is None:
        raise DataError(f"unsupported file type '{suffix or p.name}'", file=source,
                        hint=f"Use one of {', '.join(SUFFIXES)}, or a folder saved with datasets' save_to_disk.")
    return kind


def _empty(source: str) -> DataError:
    return DataError("the file is empty (no records)", file=source,
                     hint="Point data.path at a file with at least one example.")


# ---- records, streamed ------------------------------------------------------------------------

@dataclass
class Item:
    """One record as read, before parsing JSON Lines: ``raw`` (bytes of a .jsonl line) or ``obj``
    (a parsed value), or ``error`` when the record cannot be read at all."""

    raw: bytes | None
    obj: object
    where: Where
    offset: int = 0            # byte offset of the record in the file (JSON Lines)
    error: DataError | None = None
    progress: float = 0.0      # fraction of the file read so far


def parse_jsonl(raw: bytes, where: Where, offset: int) -> tuple[dict | None, DataError | None]:
    """One JSON Lines record → (object, None) or (None, DataError naming the line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, where.error(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset {offset + e.start} "
                                 "of the file)", hint="Save the file as UTF-8, " + SKIP_HINT)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return None, where.error(f"not valid JSON ({e.msg} at column {e.colno})", hint="Fix the line, " + SKIP_HINT)
    if not isinstance(obj, dict):
        return None, where.error(f"expected a JSON object such as {{\"text\": \"...\"}}, found {describe(obj)}",
                                 hint="Each line must hold one object, " + SKIP_HINT)
    return obj, None


def _iter_jsonl(p: Path, source: str) -> Iterator[Item]:
    size = max(p.stat().st_size, 1)
    offset = 0
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            start, offset = offset, offset + len(raw)
            if lineno == 1 and raw.startswith(_BOM):  # editors on Windows add one; it is not an error
                raw, start = raw[len(_BOM):], start + len(_BOM)
            if not raw.strip():
                continue  # blank lines (a trailing newline, spacing) are harmless
            yield Item(raw.rstrip(b"\r\n"), None, Where(source, line=lineno), start, progress=offset / size)


def _decode_whole(p: Path, source: str) -> str:
    data = p.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start})",
                        file=source, line=line, hint="Save the file as UTF-8.") from None


def _iter_json(p: Path, source: str, shape: list | None = None) -> Iterator[Item]:
    from engine.data.jsonshapes import iter_json_records

    text = _decode_whole(p, source)
    if not text.strip():
        raise _empty(source)
    found, records = iter_json_records(text, source)
    if shape is not None:
        shape.append(found)
    size = max(len(text), 1)
    done = 0
    for value, line, record, raw in records:
        where = Where(source, record=record)
        where.line_hint = line
        done += len(raw) if raw is not None else 0
        if not isinstance(value, dict):
            yield Item(None, None, where, error=where.error(f"expected an object, found {describe(value)}",
                                                            hint="Fix the record, " + SKIP_HINT))
            continue
        yield Item(raw.encode("utf-8") if raw is not None else None, value, where, progress=min(done / size, 1.0))


def _decoded_lines(p: Path, source: str):
    """Lines of a text file, decoded, with their endings (csv needs them); the first without a BOM."""
    offset = 0
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                err = DataError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset {offset + e.start})",
                                file=source, line=lineno, hint="Save the file as UTF-8.")
            else:
                err = None
            if err is not None:
                raise err
            offset += len(raw)
            yield offset, text


def _iter_csv(p: Path, source: str, delimiter: str) -> Iterator[Item]:
    import csv

    size = max(p.stat().st_size, 1)
    state = {"offset": 0}

    def lines():
        for off, text in _decoded_lines(p, source):
            state["offset"] = off
            yield text

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise DataError(f"not valid CSV ({e})", file=source, line=1, hint="Fix the header line.") from None
    if not header:
        raise _empty(source)
    header = [h.strip() if i == 0 else h for i, h in enumerate(header)]
    record, last_line = 0, reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"not valid CSV ({e})", file=source, line=reader.line_num,
                            hint="Fix the quoting on that line.") from None
        start, last_line = last_line + 1, reader.line_num
        if not values:
            continue  # a blank line
        record += 1
        where = Where(source, record=record)
        where.line_hint = start
        progress = state["offset"] / size
        if len(values) > len(header):
            yield Item(None, None, where, error=where.error(
                f"has more values than the {len(header)} columns of the header",
                hint="Quote values that contain the delimiter, " + SKIP_HINT), progress=progress)
        elif len(values) < len(header):
            missing = ", ".join(header[len(values):])
            yield Item(None, None, where, error=where.error(
                f"has fewer values than the {len(header)} columns of the header (no {missing})",
                hint="Fix the record, " + SKIP_HINT), progress=progress)
        else:
            yield Item(None, dict(zip(header, values)), where, progress=progress)


def _iter_text(p: Path, source: str, sample_by: str) -> Iterator[Item]:
    """Plain text: the whole file, blank-line separated paragraphs, or lines, each a ``text`` record."""
    size = max(p.stat().st_size, 1)
    if sample_by not in SAMPLE_BY:
        raise DataError(f"unknown data.sample_by '{sample_by}'", field="data.sample_by",
                        hint=f"Use one of {', '.join(SAMPLE_BY)}.")
    buf: list[str] = []
    start = 1
    offset = 0
    lineno = 0
    for lineno, (offset, text) in enumerate(_decoded_lines(p, source), 1):
        if sample_by == "document":
            buf.append(text)
            continue
        blank = not text.strip()
        if sample_by == "line":
            if not blank:
                yield Item(None, {"text": text.rstrip("\r\n")}, Where(source, line=lineno), progress=offset / size)
            continue
        if blank:
            if buf:
                yield Item(None, {"text": "".join(buf).rstrip("\r\n")}, Where(source, line=start),
                           progress=offset / size)
                buf = []
        else:
            if not buf:
                start = lineno
            buf.append(text)
    if buf and "".join(buf).strip():
        yield Item(None, {"text": "".join(buf).rstrip("\r\n") if sample_by == "paragraph" else "".join(buf)},
                   Where(source, line=start if sample_by == "paragraph" else 1), progress=1.0)
    del lineno


def _iter_arrow_table_batches(batches, n_total: int, source: str) -> Iterator[Item]:
    record = 0
    for batch in batches:
        for row in batch.to_pylist():
            record += 1
            yield Item(None, row, Where(source, record=record), progress=record / max(n_total, 1))


def _parquet_batches(p: Path, source: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(p))
        return pf.metadata.num_rows, pf.iter_batches(batch_size=_BATCH), pf.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file ({e})", file=source,
                        hint="Check that the file was written completely.") from None


def _arrow_reader(p: Path, source: str):
    """(reader over record batches, is the IPC stream format) for an .arrow file."""
    import pyarrow as pa

    try:
        src = pa.memory_map(str(p))
        try:
            return pa.ipc.open_file(src), False
        except pa.ArrowInvalid:
            src.seek(0)
            return pa.ipc.open_stream(src), True
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Arrow file ({e})", file=source,
                        hint="Write it with pyarrow's IPC writer or datasets, or convert it to .parquet.") from None


def _arrow_batches(p: Path, source: str):
    reader, stream = _arrow_reader(p, source)
    if stream:
        return None, iter(reader), reader.schema
    return None, (reader.get_batch(i) for i in range(reader.num_record_batches)), reader.schema


def _load_saved(p: Path, source: str):
    """(train Dataset, its display name, validation Dataset or None, its name) of a save_to_disk folder."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # datasets raises several types for a damaged folder
        raise DataError(f"could not load the saved dataset ({e})", file=source,
                        hint="Save it again with save_to_disk.") from None
    if not isinstance(ds, datasets.DatasetDict):
        return ds, source, None, None
    splits = list(ds)
    if "train" in ds:
        train_name = "train"
    elif len(splits) == 1:
        train_name = splits[0]
    else:
        raise DataError(f"the saved DatasetDict has no 'train' split (splits: {', '.join(splits)})",
                        file=source, hint="Save the training split under the name 'train'.")
    val_name = next((s for s in VALIDATION_SPLITS if s in ds and s != train_name), None)
    return (ds[train_name], f"{source} (split {train_name})",
            ds[val_name] if val_name else None, f"{source} (split {val_name})" if val_name else None)


def iter_items(p: Path, source: str, sample_by: str = "document", shape: list | None = None) -> Iterator[Item]:
    """Every record of the file at ``p`` in order, lazily (see ``Item``). ``shape`` (a list)
    receives a description of a .json file's shape once it is known."""
    kind = kind_of(p, source)
    if kind != "saved" and p.stat().st_size == 0:
        raise _empty(source)
    if kind == "jsonl":
        yield from _iter_jsonl(p, source)
    elif kind == "json":
        yield from _iter_json(p, source, shape)
    elif kind in ("csv", "tsv"):
        yield from _iter_csv(p, source, "\t" if kind == "tsv" else ",")
    elif kind == "text":
        yield from _iter_text(p, source, sample_by)
    elif kind == "parquet":
        n, batches, _ = _parquet_batches(p, source)
        yield from _iter_arrow_table_batches(batches, n, source)
    elif kind == "arrow":
        _, batches, _ = _arrow_batches(p, source)
        yield from _iter_arrow_table_batches(batches, 0, source)
    else:
        ds, name, _, _ = _load_saved(p, source)
        for start in range(0, len(ds), _BATCH):
            for k, row in enumerate(_rows(ds[start:start + _BATCH]), start + 1):
                yield Item(None, row, Where(name, record=k), progress=k / max(len(ds), 1))


def _rows(columns: dict) -> list[dict]:
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]


@dataclass
class Row:
    """One parsed record (``row``) or the reason it cannot be used (``error``)."""

    row: dict | None
    where: Where
    error: DataError | None
    progress: float


def iter_rows(path: str, base_dir=None, sample_by: str = "document") -> Iterator[Row]:
    """Parsed records of a data file in order, lazily: stop iterating to stop reading."""
    if not str(path or "").strip():
        raise DataError("no training data given", field="data.path",
                        hint="Set data.path to a .jsonl, .json, .csv, .parquet, .arrow or .txt file.")
    p = resolve_path(str(path), base_dir)
    for item in iter_items(p, str(path), sample_by):
        yield to_row(item)


def to_row(item: Item) -> Row:
    if item.error is not None:
        return Row(None, item.where, item.error, item.progress)
    if item.obj is None and item.raw is not None:
        obj, err = parse_jsonl(item.raw, item.where, item.offset)
        return Row(obj, item.where, err, item.progress)
    return Row(item.obj, item.where, None, item.progress)


# ---- the whole file as a memory-mapped Arrow dataset -----------------------------------------

@dataclass
class RawSource:
    """A data file as an Arrow dataset, one row per record, plus what detection needs."""

    source: str                      # the path as the user wrote it (messages quote this)
    path: Path
    kind: str                        # jsonl | json | csv | tsv | text | parquet | arrow | saved
    shape: str                       # how the records are laid out (a .json's pandas shape, ...)
    dataset: object                  # datasets.Dataset (memory-mapped)
    key: str                         # cache key of this reading
    typed: bool                      # True: the file's own columns; False: RAW_COLUMNS
    columns: list[str]               # the records' columns (union; from a sample for JSON Lines)
    column_counts: dict = field(default_factory=dict)   # column → records that have it (when known)
    samples: list[Row] = field(default_factory=list)    # the first SAMPLE_ROWS records, parsed
    unit: str = "line"               # how records are named in messages: line | record
    validation: RawSource | None = None

    def __len__(self) -> int:
        return len(self.dataset)


def open_raw(path: str, base_dir=None, sample_by: str = "document") -> RawSource:
    """The data file at ``path`` as a memory-mapped Arrow dataset, read once and cached."""
    import engine.data.cache as cache

    if not str(path or "").strip():
        raise DataError("no training data given", field="data.path",
                        hint="Set data.path to a .jsonl, .json, .csv, .parquet, .arrow or .txt file.")
    source = str(path)
    p = resolve_path(source, base_dir)
    kind = kind_of(p, source)
    if kind != "saved" and p.stat().st_size == 0:
        raise _empty(source)
    if kind == "saved":
        return _saved_source(p, source)
    if kind == "arrow":
        reader, stream = _arrow_reader(p, source)
        if stream:  # datasets' own format: memory-map the user's file as it is
            import datasets

            ds = datasets.Dataset.from_file(str(p))
            return _typed_source(source, p, "arrow", "Arrow IPC stream", ds, cache.digest(cache.file_fingerprint(p)))
    key = cache.digest("raw", cache.file_fingerprint(p), kind, sample_by if kind == "text" else None,
                       cache.code_version())
    with cache.lock("raw", key):
        meta = cache.load_entry("raw", key)
        if meta is None:
            _build_raw(p, source, kind, sample_by, key)
            meta = cache.load_entry("raw", key)
    import datasets

    ds = datasets.Dataset.from_file(str(cache.entry_dir("raw", key) / "raw.arrow"))
    if meta.get("typed"):
        return _typed_source(source, p, kind, meta["shape"], ds, key)
    samples = [to_row(_item_from_raw(ds, i, source, meta["unit"])) for i in range(min(SAMPLE_ROWS, len(ds)))]
    columns = meta.get("columns") or _columns_of(samples)
    return RawSource(source, p, kind, meta["shape"], ds, key, False, columns, meta.get("column_counts") or {},
                     samples, meta["unit"])


def _item_from_raw(ds, i: int, source: str, unit: str) -> Item:
    r = ds[i]
    where = Where(source, line=r["__line"]) if unit == "line" else Where(source, record=r["__record"])
    if r["__error"]:
        return Item(None, None, where, error=DataError.from_dict(json.loads(r["__error"])))
    return Item(r["__raw"], None, where, r["__offset"] or 0)


def _columns_of(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        if r.row is not None:
            seen.update(dict.fromkeys(str(k) for k in r.row))
    return list(seen)


def _typed_source(source: str, p: Path, kind: str, shape: str, ds, key: str) -> RawSource:
    n = min(SAMPLE_ROWS, len(ds))
    sample = _rows(ds[:n]) if n else []
    samples = [Row(row, Where(source, record=i + 1), None, (i + 1) / max(len(ds), 1)) for i, row in enumerate(sample)]
    return RawSource(source, p, kind, shape, ds, key, True, list(ds.column_names),
                     {c: len(ds) for c in ds.column_names}, samples, "record")


def _saved_source(p: Path, source: str) -> RawSource:
    import engine.data.cache as cache

    train, name, val, val_name = _load_saved(p, source)
    fp = cache.digest(cache.file_fingerprint(p))
    out = _typed_source(name, p, "saved", "a dataset saved with save_to_disk", train, fp + "-train")
    if not len(train):
        raise _empty(source)
    if val is not None:
        out.validation = _typed_source(val_name, p, "saved", "a dataset saved with save_to_disk", val, fp + "-val")
    return out


def _build_raw(p: Path, source: str, kind: str, sample_by: str, key: str) -> Path:
    """Read the file once into raw.arrow in a new cache entry; returns the entry's folder."""
    import pyarrow as pa

    import engine.data.cache as cache

    with cache.Building("raw", key) as b:
        target = b.path / "raw.arrow"
        if kind in ("parquet", "arrow"):
            n, batches, schema = _parquet_batches(p, source) if kind == "parquet" else _arrow_batches(p, source)
            rows = 0
            with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            if rows == 0:
                raise _empty(source)
            shape = "Parquet" if kind == "parquet" else "Arrow IPC file"
            return b.commit({"source": source, "path": str(p), "kind": kind, "typed": True, "rows": rows,
                             "shape": shape, "unit": "record"})
        schema = pa.schema([("__raw", pa.large_binary()), ("__line", pa.int64()), ("__record", pa.int64()),
                            ("__offset", pa.int64()), ("__error", pa.large_string())])
        shape_box: list = []
        counts: dict[str, int] | None = {} if kind in ("json", "csv", "tsv", "text") else None
        cols: dict[str, list] = {c: [] for c in RAW_COLUMNS}
        rows = 0
        with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            def flush():
                if cols["__raw"]:
                    writer.write_batch(pa.record_batch([pa.array(cols[c], schema.field(c).type) for c in RAW_COLUMNS],
                                                       schema=schema))
                    for v in cols.values():
                        v.clear()

            for item in iter_items(p, source, sample_by, shape_box):
                raw, err = item.raw, None
                if item.error is not None:
                    err = json.dumps(item.error.to_dict())
                elif raw is None:
                    raw = json.dumps(item.obj, ensure_ascii=False, default=str).encode("utf-8")
                if counts is not None and isinstance(item.obj, dict):
                    for k in item.obj:
                        counts[k] = counts.get(k, 0) + 1
                cols["__raw"].append(raw)
                cols["__line"].append(item.where.line if item.where.line is not None
                                      else getattr(item.where, "line_hint", None))
                cols["__record"].append(item.where.record if item.where.record is not None else rows + 1)
                cols["__offset"].append(item.offset)
                cols["__error"].append(err)
                rows += 1
                if len(cols["__raw"]) >= _BATCH:
                    flush()
            flush()
        if rows == 0:
            raise _empty(source)
        shape = {"jsonl": "JSON Lines", "csv": "CSV", "tsv": "TSV"}.get(kind) or (
            f"JSON, {shape_box[0]}" if shape_box else f"plain text, one record per {sample_by}")
        unit = "line" if kind in ("jsonl", "text") else "record"
        return b.commit({"source": source, "path": str(p), "kind": kind, "typed": False, "rows": rows,
                         "shape": shape, "unit": unit, "columns": list(counts) if counts else None,
                         "column_counts": counts})


# ---- the whole file as Python lists (small files; the studio's current preview) -------------

@dataclass
class Table:
    rows: list[dict]
    wheres: list[Where]
    source: str                       # the path as the user wrote it (messages quote this)
    skipped: list[DataError] = field(default_factory=list)
    validation: Table | None = None   # a DatasetDict's validation split, if it has one
    kind: str = ""
    shape: str = ""

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows[:1000]:
            for k in row:
                seen.setdefault(str(k), None)
        return list(seen)


def read_table(path: str, base_dir=None, skip_bad_lines: bool = False, sample_by: str = "document") -> Table:
    """Read ``path`` (a file or a saved dataset folder) into a Table of Python rows. Meant for small
    files and tests; the training pipeline uses ``open_raw``, which never holds the rows."""
    if not str(path or "").strip():
        raise DataError("no training data given", field="data.path",
                        hint="Set data.path to a .jsonl, .json, .csv, .parquet, .arrow or .txt file.")
    source = str(path)
    p = resolve_path(source, base_dir)
    kind = kind_of(p, source)
    if kind == "saved":
        train, name, val, val_name = _load_saved(p, source)
        table = _table_of(train, name)
        if val is not None:
            table.validation = _table_of(val, val_name)
    else:
        shape: list = []
        table = Table([], [], source, kind=kind)
        for item in iter_items(p, source, sample_by, shape):
            r = to_row(item)
            if r.error is not None:
                if not skip_bad_lines:
                    raise r.error
                table.skipped.append(r.error)
                continue
            table.rows.append(r.row)
            table.wheres.append(r.where)
        table.shape = shape[0] if shape else kind
    if not table.rows:
        if table.skipped:
            first = table.skipped[0]
            raise DataError(f"no usable records: all {len(table.skipped)} were bad (first: "
                            f"{first.location}: {first.problem})", file=source,
                            hint="Fix the file; see the first bad record above.")
        raise _empty(source)
    return table


def _table_of(ds, source: str) -> Table:
    rows = ds.to_list()
    return Table(rows, [Where(source, record=i) for i in range(1, len(rows) + 1)], source, kind="saved")
