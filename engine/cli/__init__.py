"""`peft-studio <verb> ...`: the headless face of the engine (and the studio's launcher).

One module per verb, each with ``add_parser(subparsers)`` setting ``func``; ``VERBS`` is the static
list, in the order ``--help`` shows them. A verb imports the heavy parts of the engine inside its
function, so ``peft-studio runs`` does not pay for the training stack.

Bad input ends with one plain message and exit code 2, never a traceback: every
``engine.errors.UserError`` (and a missing file) is printed as ``error: …``.
"""

from __future__ import annotations

import argparse
import sys

from engine.cli import cache, compare, data, demo, estimate, export, inspect, launch, runs, train
from engine.console import offline_env
from engine.errors import UserError

VERBS = (train, launch, demo, runs, inspect, estimate, export, compare, data, cache)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peft-studio", description="Parameter-efficient fine-tuning studio.")
    sub = p.add_subparsers(dest="verb")
    for verb in VERBS:
        verb.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    offline_env()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
