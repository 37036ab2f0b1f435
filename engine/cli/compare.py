"""`peft-studio compare-methods run.yaml --methods lora,ia3,…`: one table of methods trained on
the same data, seed and budget (engine.compare)."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.cli.common import load_config


def add_parser(sub) -> None:
    p = sub.add_parser("compare-methods", help="train several methods on the same data, seed and "
                       "budget and tabulate their cost and result")
    p.add_argument("run_file")
    p.add_argument("--methods", required=True, help="comma-separated method names, e.g. lora,ia3,prompt_tuning")
    p.add_argument("--steps", type=int, help="optimizer steps per method (default: the run file's train.max_steps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field for every method, e.g. --set train.batch_size=8")
    p.add_argument("--lr", action="append", default=[], metavar="METHOD=LR", help="learning rate for one method")
    p.add_argument("--out", default="runs/compare", help="folder for the runs and comparison.md")
    p.add_argument("--prompts", type=int, default=10, help="held-out prompts scored per method (demo data only; "
                   "0 skips scoring)")
    p.add_argument("--doc", help="also replace the comparison section of this markdown file "
                   "(e.g. docs/methods.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.compare import compare_methods, parse_lrs

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    base = load_config(args.run_file, args.set)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    command = "peft-studio compare-methods " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["compare-methods"]
                                                         else [args.run_file, "--methods", args.methods])
    rows, body = compare_methods(base, methods, steps=args.steps, lrs=parse_lrs(args.lr), out=Path(args.out),
                                 prompts=args.prompts, doc=Path(args.doc) if args.doc else None,
                                 command=command, log=log)
    print(body)
    return 0 if all(r.status == "finished" for r in rows) else 1
