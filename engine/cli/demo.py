"""`peft-studio demo`: fine-tune the demo model on the demo data and show before/after."""

from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="fine-tune the demo model on the demo dataset and show before/after")
    d.add_argument("--task", default="sft", choices=["sft", "dpo", "orpo", "kto", "simpo"],
                   help="sft: the persona SFT demo; dpo/orpo/kto/simpo: preference tuning on "
                        "resources/preference (persona answers preferred to plain ones)")
    d.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 30 for sft, 40 for a "
                                                           "preference task)")
    d.add_argument("--out", default=None, help="the run folder (default: runs/demo, or runs/demo-<task>)")
    d.add_argument("--prompts", type=int, default=20, help="held-out prompts to score")
    d.set_defaults(func=run)


def run(args) -> int:
    from engine.demo import run_demo

    steps = args.steps or (30 if args.task == "sft" else 40)
    out = args.out or ("runs/demo" if args.task == "sft" else f"runs/demo-{args.task}")
    return run_demo(steps=steps, out=out, prompts=args.prompts, task=args.task)
