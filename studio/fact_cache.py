"""A small cache of what the background jobs found last time (model facts, the memory estimate), so
a relaunch shows them at once — marked as cached — instead of ~30 s later, when the helper
processes have imported the ML libraries and answered again.

One JSON file in the studio's data folder, a few entries per kind, written atomically (a temp
file and ``os.replace``: the engine's atomic writer is internal to the engine). Qt is used only
for the folder's location; reads and writes are plain files, in the UI thread (a few KiB).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QStandardPaths

KEEP = 8                  # entries per kind (a few models and configs recently looked at)
FILE = "facts.json"


def cache_path() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".peft-studio") / FILE


def _key(args) -> str:
    return json.dumps(args, sort_keys=True, default=str)


class FactCache:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else cache_path()
        self._data: dict[str, list] | None = None

    def _load(self) -> dict[str, list]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def get(self, kind: str, args):
        """What was stored for ``kind`` with these arguments (None when nothing)."""
        key = _key(args)
        for k, value in self._load().get(kind, []):
            if k == key:
                return value
        return None

    def put(self, kind: str, args, value) -> None:
        data = self._load()
        key = _key(args)
        entries = [[k, v] for k, v in data.get(kind, []) if k != key]
        data[kind] = [[key, value], *entries][:KEEP]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".facts-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs the next launch a few seconds


_shared: FactCache | None = None


def shared() -> FactCache:
    """The studio's one cache (its file is read once per process)."""
    global _shared
    if _shared is None or _shared.path != cache_path():
        _shared = FactCache()
    return _shared
