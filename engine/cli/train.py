"""`peft-studio train run.yaml [--set k=v] [--resume latest] [--format json|human]`."""

from __future__ import annotations

import sys

from engine.cli.common import add_set_option, load_config
from engine.console import human_sink
from engine.events import StreamSink


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train from a run file")
    t.add_argument("run_file")
    add_set_option(t)
    t.add_argument("--resume", metavar="CHECKPOINT", help="resume from a checkpoint folder or `latest`")
    t.add_argument("--format", choices=["auto", "json", "human"], default="auto",
                   help="stdout: JSON-lines events (default when piped) or a progress bar")
    t.add_argument("--no-stdin", action="store_true", help="do not listen for `stop` on stdin")
    t.set_defaults(func=run)


def run(args) -> int:
    # engine.training pulls in the training stack's modules; only this verb needs it.
    from engine.training import StopFlag, install_signal_handlers, train

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
        sink = human_sink()
    stop = StopFlag()
    install_signal_handlers(stop)
    result = train(cfg, sinks=[sink], stop=stop, listen_stdin=not args.no_stdin)
    return 0 if result.status in ("finished", "stopped") else 1
