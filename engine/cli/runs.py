"""`peft-studio runs [--json] [--add DIR …]`: the run index."""

from __future__ import annotations

import json

from engine.runs import RunIndex


def add_parser(sub) -> None:
    r = sub.add_parser("runs", help="list runs from the run index")
    r.add_argument("--limit", type=int, default=50)
    r.add_argument("--json", action="store_true")
    r.add_argument("--add", nargs="*", help="index these run folders first")
    r.set_defaults(func=run)


def run(args) -> int:
    idx = RunIndex()
    if args.add:
        for d in args.add:
            idx.record(d)
    rows = idx.list(limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("No runs yet. Start one with `peft-studio train run.yaml` or `peft-studio demo`.")
        return 0
    print(f"{'status':9} {'method':14} {'steps':>6} {'loss':>8}  run")
    for r in rows:
        loss = f"{r['final_loss']:.4f}" if r.get("final_loss") is not None else "-"
        print(f"{r['status']:9} {str(r['method']):14} {r['steps'] or 0:>6} {loss:>8}  {r['run_dir']}")
    return 0
