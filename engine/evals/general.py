"""The bundled general reference of the forgetting check: ``resources/general`` (written for this
project; see its README): 320 passages of plain English and 48 general prompts.

Found relative to the repository, like the demo data (engine.data.demo), not as package data.
"""

from __future__ import annotations

import json
from pathlib import Path

GENERAL_DIR = Path(__file__).resolve().parents[2] / "resources" / "general"
REFERENCE = GENERAL_DIR / "reference.jsonl"
PROMPTS = GENERAL_DIR / "prompts.jsonl"


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def passages(n: int | None = None) -> list[str]:
    """The first ``n`` passages' texts (all 320 for None); the file is shuffled, so any prefix
    covers many topics."""
    rows = _read(REFERENCE)
    return [r["text"] for r in rows[: n if n is not None else len(rows)]]


def prompts(n: int | None = None) -> list[list[dict]]:
    """The first ``n`` general prompts, each a conversation (one user turn)."""
    rows = _read(PROMPTS)
    return [r["messages"] for r in rows[: n if n is not None else len(rows)]]


def fingerprint() -> str:
    """A short hash of both files: cached base figures are only reused for the same text."""
    import hashlib

    h = hashlib.sha256()
    for p in (REFERENCE, PROMPTS):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
