"""Regenerate the event contract in docs/architecture.md from the typed events (engine/events.py).

    python scripts/update_architecture_doc.py          # rewrite the table
    python scripts/update_architecture_doc.py --check  # exit 1 when the committed table is stale

tests/engine/test_architecture.py runs the same comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine import atomic
from engine.events import contract_markdown

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
BEGIN, END = "<!-- events:begin -->", "<!-- events:end -->"


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{contract_markdown()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOC} is stale: run python scripts/update_architecture_doc.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        atomic.write_text(DOC, new)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
