"""`peft-studio demo`: fine-tune the demo model on the demo data and show before/after."""

from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="fine-tune the demo model on the demo dataset and show before/after")
    d.add_argument("--task", default="sft", choices=["sft", "dpo", "orpo", "kto", "simpo"],
                   help="sft: the persona SFT demo; dpo/orpo/kto/simpo: preference tuning on "
                        "resources/preference (persona answers preferred to plain ones)")
    d.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 30 for sft, 16 for a "
                                                           "preference task)")
    d.add_argument("--out", default=None, help="the run folder (default: runs/demo, or runs/demo-<task>)")
    d.add_argument("--prompts", type=int, default=20, help="held-out prompts to score")
    d.add_argument("--from-adapter", default=None, metavar="PATH",
                   help="preference tasks: continue this adapter (a run folder such as runs/demo, the SFT "
                        "demo's, or an adapter folder) instead of starting from the base; the reference "
                        "model is then that adapter (method.from_adapter)")
    d.set_defaults(func=run)


def run(args) -> int:
    from engine.demo import PREFERENCE_STEPS, run_demo

    steps = args.steps or (30 if args.task == "sft" else PREFERENCE_STEPS)
    out = args.out or ("runs/demo" if args.task == "sft" else f"runs/demo-{args.task}")
    if args.from_adapter and args.task == "sft":
        from engine.errors import ConfigError

        raise ConfigError("--from-adapter", "continues an adapter with a preference task; add --task dpo "
                          "(or orpo, kto, simpo)")
    return run_demo(steps=steps, out=out, prompts=args.prompts, task=args.task, from_adapter=args.from_adapter)
