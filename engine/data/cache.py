"""The prepared-data cache: Arrow files keyed by a fingerprint of everything that shaped them.

Layout under ``cache_root()`` (engine.paths.data_cache_dir: ``$PEFT_STUDIO_DATA_CACHE``, else
``$PEFT_STUDIO_CACHE/data``, else ``$XDG_CACHE_HOME/peft-studio/data``, else
``~/.cache/peft-studio/data``)::

    raw/<key>/        a data file split into records (Arrow), + meta.json
    prepared/<key>/   its records rendered and tokenized (Arrow shards from Dataset.map), + meta.json

An entry is complete when its ``meta.json`` exists: it is written last, and an entry is built in
a temporary folder beside its place and renamed into it (engine.atomic), so a crash or a second
process never sees half of one.
Keys hash the input files (resolved path, size, modification time and the first and last MiB),
the options that shape the records, the tokenizer and chat template, and the source of the data
package itself (a code change invalidates old entries). The cache keeps under a size limit
(``$PEFT_STUDIO_DATA_CACHE_GB``, default 20 GB) by removing the least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine import atomic, paths

META = "meta.json"
KINDS = ("raw", "prepared")
DEFAULT_LIMIT_GB = 20.0
_SAMPLE = 1 << 20  # bytes hashed from each end of a file


def cache_root() -> Path:
    """The data cache folder (not created here)."""
    return paths.data_cache_dir()


def limit_bytes() -> int:
    """The cache's size limit in bytes ($PEFT_STUDIO_DATA_CACHE_GB, default 20 GB)."""
    try:
        gb = float(os.environ.get("PEFT_STUDIO_DATA_CACHE_GB", DEFAULT_LIMIT_GB))
    except ValueError:
        gb = DEFAULT_LIMIT_GB
    return int(gb * 1e9)


def digest(*parts) -> str:
    """A short stable hash of JSON-able parts (24 hex digits)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def file_fingerprint(path: Path) -> dict:
    """Identity of a file or folder's content: resolved path, sizes, mtimes, first/last MiB hashed."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        st = f.stat()
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            h.update(fh.read(_SAMPLE))
            if st.st_size > 2 * _SAMPLE:
                fh.seek(-_SAMPLE, os.SEEK_END)
                h.update(fh.read(_SAMPLE))
        out.append([str(f), st.st_size, st.st_mtime_ns, h.hexdigest()[:16]])
    return {"path": str(path), "files": out}


_CODE_VERSION: str | None = None


def code_version() -> str:
    """A hash of this package's source: entries made by other code are not reused."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        h = hashlib.sha256()
        for f in sorted(Path(__file__).parent.glob("*.py")):
            h.update(f.read_bytes())
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


@dataclass
class Entry:
    """One complete cache entry."""

    kind: str          # raw | prepared
    key: str
    path: Path
    meta: dict
    size: int          # bytes on disk
    last_used: float   # time.time()


def entry_dir(kind: str, key: str) -> Path:
    return cache_root() / kind / key


def load_entry(kind: str, key: str) -> dict | None:
    """The meta of a complete entry (and mark it used), or None."""
    meta_path = entry_dir(kind, key) / META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        os.utime(meta_path)  # least-recently-used eviction reads this time
    except OSError:
        pass
    return meta


@contextmanager
def lock(kind: str, key: str):
    """Hold an exclusive lock on ``key`` while checking and building it: a second process (another
    rank of ``accelerate launch``, the studio's report beside a training run) waits, then finds
    the entry the first one committed instead of preparing the same data again."""
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock; both build, the first commit wins
        yield
        return
    with open(folder / f".{key}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Building:
    """A temporary folder for a new entry; ``commit(meta)`` moves it into place atomically.

    Use as a context manager: the folder is removed unless committed. When another process
    committed the same key meanwhile, its entry is kept and this one discarded (same content).
    """

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self.final = entry_dir(kind, key)
        self.path: Path | None = None

    def __enter__(self) -> Building:
        self.path = atomic.temp_dir_beside(self.final)
        return self

    def commit(self, meta: dict) -> Path:
        meta = {**meta, "kind": self.kind, "key": self.key, "created": time.time()}
        atomic.write_text(self.path / META, json.dumps(meta, indent=1, default=str))
        if (self.final / META).exists():  # a concurrent process finished first: same content
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            atomic.swap_into_place(self.path, self.final)
        return self.final

    def __exit__(self, *exc) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def entries() -> list[Entry]:
    """Every complete entry, most recently used first."""
    out = []
    for kind in KINDS:
        base = cache_root() / kind
        if not base.is_dir():
            continue
        for d in base.iterdir():
            meta_path = d / META
            if d.name.startswith(".") or not meta_path.exists():
                continue
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                out.append(Entry(kind, d.name, d, meta, _size(d), meta_path.stat().st_mtime))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda e: -e.last_used)


def remove(entry: Entry) -> None:
    """Delete one entry (memory-mapped readers keep working: Linux unlinks lazily)."""
    (entry.path / META).unlink(missing_ok=True)
    shutil.rmtree(entry.path, ignore_errors=True)


def clear(older_than_days: float | None = None) -> tuple[int, int]:
    """Remove entries (all, or those unused for the given days) and stale temporary folders.
    Returns (entries removed, bytes freed)."""
    now = time.time()
    n = freed = 0
    for e in entries():
        if older_than_days is None or now - e.last_used > older_than_days * 86400:
            remove(e)
            n += 1
            freed += e.size
    for kind in KINDS:
        base = cache_root() / kind
        if base.is_dir():
            for d in [*base.glob(".*.partial-*"), *base.glob(".*.lock")]:
                if older_than_days is None or now - d.stat().st_mtime > 86400:
                    if d.is_dir():
                        freed += _size(d)
                        shutil.rmtree(d, ignore_errors=True)
                    else:
                        d.unlink(missing_ok=True)
    return n, freed


def enforce_limit(keep: set[str] = frozenset()) -> list[Entry]:
    """Remove least recently used entries until the cache fits its limit; ``keep`` (keys) are
    never removed. Returns what was removed."""
    all_entries = entries()
    total = sum(e.size for e in all_entries)
    removed = []
    for e in reversed(all_entries):  # oldest first
        if total <= limit_bytes():
            break
        if e.key in keep:
            continue
        remove(e)
        total -= e.size
        removed.append(e)
    return removed
