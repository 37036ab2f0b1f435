"""`peft-studio inspect MODEL`: architecture, size and target modules, as JSON."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    i = sub.add_parser("inspect", help="show a model's architecture, size and target modules")
    i.add_argument("model")
    i.set_defaults(func=run)


def run(args) -> int:
    from engine.inspect import inspect_model

    print(json.dumps(inspect_model(args.model), indent=2, default=str))
    return 0
