"""`peft-studio demo`: fine-tune the demo model on the demo data and show before/after."""

from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="fine-tune the demo model on the demo dataset and show before/after")
    d.add_argument("--steps", type=int, default=30)
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--prompts", type=int, default=20, help="held-out prompts to score")
    d.set_defaults(func=run)


def run(args) -> int:
    from engine.demo import run_demo

    return run_demo(steps=args.steps, out=args.out, prompts=args.prompts)
