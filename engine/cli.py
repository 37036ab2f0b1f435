"""`peft-studio <verb> ...`: the headless face of the engine (and the studio's launcher).

Verbs: train, estimate, demo, runs, inspect (+ export, merge, merge-adapters, chat,
compare-methods where their modules are present). Bad input ends with one plain message and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys

# Optional verbs live in their own modules, each exposing add_parser(subparsers) and run(args).
_PLUGIN_VERBS = ["engine.estimate.cli", "engine.export_cli", "engine.compare", "engine.distributed.cli"]


def _offline_env() -> None:
    # Offline first (DESIGN §2.6): never reach for the hub unless the user said so.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def load_config(path: str, overrides: list[str] | None = None):
    from engine.config import RunConfig

    cfg = RunConfig.load(path)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def _human_sink(stream=sys.stderr):
    """Progress for a person at a terminal: a tqdm bar plus log lines."""
    from tqdm import tqdm

    state = {"bar": None}

    def emit(ev):
        kind = ev["event"]
        if kind == "started":
            state["bar"] = tqdm(total=ev.get("total_steps"), initial=ev.get("resumed_from_step") or 0,
                                unit="step", file=stream, dynamic_ncols=True)
        elif kind == "step" and state["bar"] is not None:
            bar = state["bar"]
            bar.n = ev["step"]
            post = {"loss": f"{ev['loss']:.4f}" if ev.get("loss") is not None else "-"}
            if ev.get("tokens_per_s"):
                post["tok/s"] = f"{ev['tokens_per_s']:.0f}"
            bar.set_postfix(post, refresh=False)
            bar.refresh()
        elif kind in ("log", "warning"):
            msg = ("warning: " if kind == "warning" else "") + ev["message"]
            (state["bar"].write(msg) if state["bar"] is not None else print(msg, file=stream))
        elif kind == "eval":
            line = f"eval loss {ev['eval_loss']:.4f} at step {ev['step']}"
            (state["bar"].write(line) if state["bar"] is not None else print(line, file=stream))
        elif kind in ("finished", "stopped", "failed"):
            if state["bar"] is not None:
                state["bar"].close()
            if kind == "failed":
                print(f"error: {ev['error']}\nhint: {ev.get('hint', '')}", file=stream)
            else:
                print(f"{kind}: adapter saved in {ev.get('adapter_dir')}", file=stream)

    from engine.events import CallbackSink

    return CallbackSink(emit)


def cmd_train(args) -> int:
    from engine.events import StreamSink
    from engine.train import StopFlag, install_signal_handlers, train

    cfg = load_config(args.run_file, args.set)
    if args.resume:
        cfg.train.resume_from = args.resume
    fmt = args.format
    if fmt == "auto":
        fmt = "human" if sys.stdout.isatty() else "json"
    if fmt == "json":
        # stdout carries only events; anything a library prints goes to stderr instead.
        events_out = sys.stdout
        sys.stdout = sys.stderr
        sink = StreamSink(events_out)
    else:
        sink = _human_sink()
    stop = StopFlag()
    install_signal_handlers(stop)
    result = train(cfg, sinks=[sink], stop=stop, listen_stdin=not args.no_stdin)
    return 0 if result.status in ("finished", "stopped") else 1


def cmd_runs(args) -> int:
    from engine.runs import RunIndex

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


def cmd_inspect(args) -> int:
    from engine.models import inspect_model

    info = inspect_model(args.model)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_demo(args) -> int:
    from engine.demo import run_demo

    return run_demo(steps=args.steps, out=args.out, prompts=args.prompts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peft-studio", description="Parameter-efficient fine-tuning studio.")
    sub = p.add_subparsers(dest="verb")

    t = sub.add_parser("train", help="train from a run file")
    t.add_argument("run_file")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set train.lr=1e-4 (repeatable)")
    t.add_argument("--resume", metavar="CHECKPOINT", help="resume from a checkpoint folder or `latest`")
    t.add_argument("--format", choices=["auto", "json", "human"], default="auto",
                   help="stdout: JSON-lines events (default when piped) or a progress bar")
    t.add_argument("--no-stdin", action="store_true", help="do not listen for `stop` on stdin")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="fine-tune the demo model on the demo dataset and show before/after")
    d.add_argument("--steps", type=int, default=30)
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--prompts", type=int, default=20, help="held-out prompts to score")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("runs", help="list runs from the run index")
    r.add_argument("--limit", type=int, default=50)
    r.add_argument("--json", action="store_true")
    r.add_argument("--add", nargs="*", help="index these run folders first")
    r.set_defaults(func=cmd_runs)

    i = sub.add_parser("inspect", help="show a model's architecture, size and target modules")
    i.add_argument("model")
    i.set_defaults(func=cmd_inspect)

    for mod in _PLUGIN_VERBS:
        try:
            present = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            present = False
        if present:
            importlib.import_module(mod).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _offline_env()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from engine.config import ConfigError
    from engine.models import ModelError

    user_errors: tuple = (ConfigError, ModelError, FileNotFoundError)
    try:
        from engine.data import DataError

        user_errors += (DataError,)
    except ImportError:
        pass
    try:
        return int(args.func(args) or 0)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
