"""`peft-studio runs [--json] [--add DIR …]`: the run index; `runs compare A B [C…]`: settings that
differ and results side by side; `runs import DIR`: a Trainer run made elsewhere, read-only."""

from __future__ import annotations

import json

from engine.runs import RunIndex


def add_parser(sub) -> None:
    r = sub.add_parser("runs", help="list runs from the run index; compare runs; import a Trainer run",
                       description="List the run index (default), compare runs, or import a run made by a "
                                   "plain transformers/TRL script.")
    r.add_argument("--limit", type=int, default=50)
    r.add_argument("--json", action="store_true")
    r.add_argument("--add", nargs="*", help="index these run folders first")
    r.set_defaults(func=run)
    verbs = r.add_subparsers(dest="runs_verb")
    c = verbs.add_parser("compare", help="the settings that differ and the final/best metrics (forgetting "
                                         "included) of two or more runs, side by side")
    c.add_argument("run_dirs", nargs="+", metavar="RUN", help="run folders (two or more)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_compare)
    i = verbs.add_parser("import", help="index a transformers/TRL Trainer output folder (with "
                                        "trainer_state.json) as a read-only run with its curves")
    i.add_argument("folders", nargs="+", metavar="DIR")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=run_import)


def run(args) -> int:
    from engine.evals import short_forgetting

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
    print(f"{'status':9} {'method':14} {'steps':>6} {'loss':>8}  {'forgetting':26} run")
    for r in rows:
        loss = f"{r['final_loss']:.4f}" if r.get("final_loss") is not None else "-"
        fg = short_forgetting(r.get("forgetting")) or "-"
        print(f"{r['status']:9} {str(r['method']):14} {r['steps'] or 0:>6} {loss:>8}  {fg:26} {r['run_dir']}")
    return 0


def run_compare(args) -> int:
    from engine.history import compare_runs, format_comparison

    c = compare_runs(args.run_dirs)
    print(json.dumps(c.to_dict(), indent=2, default=str) if args.json else format_comparison(c))
    return 0


def run_import(args) -> int:
    from engine.history import import_trainer_run

    rows = [import_trainer_run(f) for f in args.folders]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        loss = f"{r['final_loss']:.4f}" if r.get("final_loss") is not None else "-"
        print(f"imported {r['source']}: {r['steps']} steps, final loss {loss} → {r['run_dir']} (read-only; "
              "`peft-studio runs` lists it)")
    return 0
