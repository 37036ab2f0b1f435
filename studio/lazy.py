"""``np``: numpy, imported on first use rather than at start-up (~0.15-0.3 s before the window)."""

from __future__ import annotations

import importlib


class _Lazy:
    def __init__(self, name: str):
        self._name = name
        self._mod = None

    def __getattr__(self, attr):
        if self._mod is None:
            self._mod = importlib.import_module(self._name)
        return getattr(self._mod, attr)


np = _Lazy("numpy")
