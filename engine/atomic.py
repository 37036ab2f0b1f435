"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of one.

The one implementation for the engine: run files, the run index's neighbours, caches, saved
adapters, checkpoints, exports and the converted demo model all go through here.

* :func:`write_text` / :func:`write_bytes` — a file written to a temporary sibling, flushed,
  fsynced and renamed over the target (``os.replace`` is atomic on one file system).
* :func:`replace_dir` — a context manager yielding a temporary sibling folder; when the block
  finishes without an exception the folder becomes the target (an existing one is swapped out
  first and removed afterwards, so at no moment is there no complete folder). On an exception the
  temporary folder is removed and the target is untouched.

Temporary names start with a dot and carry ``.partial-`` (folders) or end in ``.tmp`` (files),
so a crash leaves recognisable litter next to the target, never a broken target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parent folders are created). Raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically. Raises OSError."""
    write_bytes(path, text.encode("utf-8"))


def temp_dir_beside(target: Path) -> Path:
    """A new empty folder next to ``target`` (same file system, so a rename can finish it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))


def swap_into_place(tmp: Path, target: Path) -> None:
    """Make the complete folder ``tmp`` the folder ``target``, replacing any existing one."""
    old = None
    if target.exists():
        # Swap, don't delete-then-rename: at no moment is there no complete folder.
        old = target.with_name(f".{target.name}.old-{int(time.time() * 1000)}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replace_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; when the block succeeds it replaces ``target``.

    Raises OSError when the parent cannot be created or written; whatever the block raises is
    re-raised after the temporary folder is removed."""
    target = Path(target)
    tmp = temp_dir_beside(target)
    try:
        yield tmp
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
