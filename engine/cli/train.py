"""`peft-studio train run.yaml [--set k=v] [--resume latest] [--format human|json]`.

stdout carries readable lines by default, whether it is a terminal, a file (`> log.txt`), a pipe
or a scheduler's log; ``--format json`` makes it the JSON-lines event stream instead (what the
studio reads). Exit codes: 0 finished, stopped or already complete; 2 a mistake the user can fix
(the message says what; no traceback); 1 anything else.
"""

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
    t.add_argument("--format", choices=["human", "json", "auto"], default="human",
                   help="stdout: readable lines (default, also when redirected; `auto` is the same) or "
                        "JSON-lines events")
    t.add_argument("--no-stdin", action="store_true", help="do not listen for `stop` on stdin")
    t.set_defaults(func=run)


def run(args) -> int:
    # engine.training pulls in the training stack's modules; only this verb needs it.
    from engine.training import StopFlag, install_signal_handlers, train

    cfg = load_config(args.run_file, args.set)
    if args.resume:
        cfg.train.resume_from = args.resume
    if args.format == "json":
        # stdout carries only events; anything a library prints goes to stderr instead.
        events_out = sys.stdout
        sys.stdout = sys.stderr
        sink = StreamSink(events_out)
    else:
        sink = human_sink(sys.stdout)
    stop = StopFlag()
    install_signal_handlers(stop)
    result = train(cfg, sinks=[sink], stop=stop, listen_stdin=not args.no_stdin)
    if result.status in ("finished", "stopped", "complete"):
        return 0
    return 2 if result.user_error else 1
