"""The `peft-studio` console script: the studio with no arguments (or `studio ...`), otherwise
the headless engine CLI. It lives in the studio package because the engine may never import Qt
code (an import-linter contract), while the studio may use the engine."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "studio":
        from studio.app import main as studio_main

        return studio_main(argv[1:])
    from engine.cli import main as engine_main

    return engine_main(argv)


if __name__ == "__main__":
    sys.exit(main())
