"""Where PEFT Studio keeps its files outside a run folder: one rule for every module.

* :func:`cache_dir` — things that can be rebuilt (the demo model converted to safetensors, the
  peft config schema): ``$PEFT_STUDIO_CACHE``, else ``$XDG_CACHE_HOME/peft-studio``, else
  ``~/.cache/peft-studio``.
* :func:`data_cache_dir` — prepared (tokenized) data sets (engine/data/cache.py): ``$PEFT_STUDIO_DATA_CACHE``,
  else ``cache_dir() / "data"`` (its own variable, so tests can isolate it and keep the demo model).
* :func:`home_dir` — things that must survive (the run index): ``$PEFT_STUDIO_HOME``, else
  ``$XDG_DATA_HOME/peft-studio``, else ``~/.local/share/peft-studio``.

The environment is read on every call, so tests point both at temporary folders with
``monkeypatch.setenv`` and nothing they do reaches the user's home.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "peft-studio"


def cache_dir() -> Path:
    """The cache folder (may not exist yet)."""
    base = os.environ.get("PEFT_STUDIO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), APP)
    return Path(base)


def data_cache_dir() -> Path:
    """The prepared-data cache folder (may not exist yet)."""
    explicit = os.environ.get("PEFT_STUDIO_DATA_CACHE")
    return Path(explicit).expanduser() if explicit else cache_dir() / "data"


def home_dir() -> Path:
    """The data folder (may not exist yet)."""
    base = os.environ.get("PEFT_STUDIO_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), APP)
    return Path(base)


def run_index_path() -> Path:
    """The SQLite run index (``engine.runs.RunIndex``)."""
    return home_dir() / "runs.sqlite"
