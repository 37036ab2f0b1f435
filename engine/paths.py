"""Where PEFT Studio keeps its files outside a run folder: one rule for every module.

* :func:`cache_dir` — things that can be rebuilt (the demo model converted to safetensors, the
  peft config schema): ``$PEFT_STUDIO_CACHE``, else ``$XDG_CACHE_HOME/peft-studio``, else
  ``~/.cache/peft-studio``.
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


def home_dir() -> Path:
    """The data folder (may not exist yet)."""
    base = os.environ.get("PEFT_STUDIO_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), APP)
    return Path(base)


def run_index_path() -> Path:
    """The SQLite run index (``engine.runs.RunIndex``)."""
    return home_dir() / "runs.sqlite"
