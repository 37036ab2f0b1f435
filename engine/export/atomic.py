"""Atomic output folders: an export is either complete at its final path or absent.

Everything is written into a temporary sibling folder (same file system, so the final step is
a rename, not a copy) and moved into place with ``os.replace`` only once every file is there.
A failure at any point (read-only parent, full disk, an exception while merging) removes the
temporary folder and leaves whatever was at the target before untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.atomic import swap_into_place, temp_dir_beside
from engine.errors import UserError

_WRITE_ERRORS = (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT)


class ExportError(UserError):
    """An export cannot be done; the message is meant for the user (CLI and studio show it as is)."""


def describe_os_error(e: OSError, target: Path) -> str:
    """A plain sentence for the file-system failures people actually hit."""
    if e.errno == errno.ENOSPC:
        return f"Not enough disk space to write {target}. Free some space or choose another folder."
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot write to {target.parent}: permission denied or read-only. Choose a folder you can write to."
    if e.errno == errno.EDQUOT:
        return f"Disk quota exceeded while writing {target}."
    return f"Could not write {target}: {e.strerror or e}"


@contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``target``.

    ``overwrite=False`` refuses an existing non-empty target up front (before any expensive
    work); with ``True`` the old folder is swapped out only after the new one is complete.
    """
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is a file; choose a folder name for the export.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ExportError(f"{target} already exists and is not empty. Choose another folder or allow "
                          "overwriting (--force).")
    try:
        tmp = temp_dir_beside(target)
    except OSError as e:
        raise ExportError(describe_os_error(e, target)) from None
    try:
        yield tmp
        swap_into_place(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in _WRITE_ERRORS:
            raise ExportError(describe_os_error(e, target)) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
