"""`peft-studio bench RUN --tasks …`: lm-evaluation-harness tasks, base vs tuned, offline (task files
you provide with --include-path, or lm-eval tasks whose data is in the local datasets cache)."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="lm-evaluation-harness tasks on the base and the tuned model (optional "
                                     "extra: pip install 'peft-studio[bench]')")
    p.add_argument("path", metavar="RUN", help="a run folder, an adapter folder or a merged model folder")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    p.add_argument("--include-path", help="a folder of your own lm-eval task YAML files")
    p.add_argument("--limit", type=float, help="documents per task (or a fraction below 1), for a quick look")
    p.add_argument("--checkpoint", default="final", help="final (default), best, latest or checkpoint-N")
    p.add_argument("--base", help="the base model (for a merged model folder)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.evaluate import bench

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    out = bench(args.path, tasks, args.include_path, args.limit, args.checkpoint, args.base, args.batch_size,
                log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'task':24} {'metric':14} {'base':>10} {'tuned':>10} {'change':>10}")
    for task in sorted(set(out["base"]) | set(out["tuned"])):
        b, t = out["base"].get(task, {}), out["tuned"].get(task, {})
        for metric in sorted(set(b) | set(t)):
            bv, tv = b.get(metric), t.get(metric)
            delta = f"{tv - bv:+.4f}" if bv is not None and tv is not None else "—"
            print(f"{task:24} {metric:14} {_n(bv):>10} {_n(tv):>10} {delta:>10}")
    return 0


def _n(v) -> str:
    return "—" if v is None else f"{v:.4f}"
