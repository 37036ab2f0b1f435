"""The failing cases of 2026-11-29 that issue 14 fixed, each with its own copy of the input under
tests/data/cases/<case>/ (a run.yaml with PLACEHOLDER_MODEL / PLACEHOLDER_OUT, and its data)."""

from __future__ import annotations

import shutil
from pathlib import Path

CASES = Path(__file__).resolve().parents[1] / "data" / "cases"


def case_folder(name: str, tmp_path: Path, model, out: str | Path = "out") -> Path:
    """A writable copy of case ``name`` in ``tmp_path`` with the placeholders filled in; returns
    the folder (its run.yaml names the data by a path relative to it)."""
    dst = tmp_path / name
    shutil.copytree(CASES / name, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    run = dst / "run.yaml"
    text = run.read_text(encoding="utf-8")
    run.write_text(text.replace("PLACEHOLDER_MODEL", str(model)).replace("PLACEHOLDER_OUT", str(out)),
                   encoding="utf-8")
    return dst


def case_config(name: str, tmp_path: Path, model, out: str | Path | None = None):
    """The case's RunConfig with its data and output folder as absolute paths (for in-process runs)."""
    from engine.config import RunConfig

    folder = case_folder(name, tmp_path, model, out or tmp_path / "out")
    cfg = RunConfig.load(folder / "run.yaml")
    cfg.data.path = str(folder / cfg.data.path)
    return cfg
