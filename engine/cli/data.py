"""`peft-studio data run.yaml [--json]`: the data report.

Reads the run's data exactly as training will (the same files, settings, tokenizer and chat
template; no model weights) and prints what it found: the format and why, the columns used and
ignored, every record not trained as written (by line), roles and turns, empty turns, duplicates,
prompts without an answer, placeholders, the token-length histogram and the share of tokens that
carry loss. It fills the data cache, so a ``train`` of the same run file afterwards starts without
preparing the data again. Exit code 2 (and, with --json, the error as JSON with the detected
preference shape) when the data cannot be trained as configured.
"""

from __future__ import annotations

import json
import sys

from engine.cli.common import add_set_option, load_config
from engine.tasks import get_task


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="report on a run's data: format, columns, problems by line, lengths",
                       description="Read the run's data as training would and report what it found.")
    d.add_argument("run_file", help="run.yaml")
    d.add_argument("--json", action="store_true", help="print the whole report as JSON (every problem by line)")
    add_set_option(d, "override a run-file field, e.g. --set data.max_length=1024")
    d.add_argument("--shown", type=int, default=5, help="items of each list shown in the text report")
    d.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    d.set_defaults(func=run)


class _StderrReporter:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr)

    def warn(self, msg: str) -> None:
        if not self.quiet:
            print(f"warning: {msg}", file=sys.stderr)


def run(args) -> int:
    from engine.data import DataError, data_report
    from engine.methods import get_method
    from engine.models import load_tokenizer

    cfg = load_config(args.run_file, args.set)
    cfg.validate()
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
    task = get_task(cfg.train.task)
    if task.is_preference:  # preference data: TRL's columns and the preference report
        from engine.data.preference import prepare_preference_data

        prepared = prepare_preference_data(cfg.data, task.data, tokenizer, seed=cfg.train.seed,
                                           reporter=_StderrReporter(args.quiet or args.json))
        if args.json:
            print(json.dumps(prepared.report.to_dict(), indent=2, ensure_ascii=False))
        else:
            print(f"{task.title} data (train.task: {task.name})")
            print("\n".join(prepared.report.lines()))
        return 0
    extra = get_method(cfg.method.name).virtual_tokens(cfg.method)
    try:
        report = data_report(cfg.data, tokenizer, seed=cfg.train.seed, extra_prompt_tokens=extra,
                             reporter=_StderrReporter(args.quiet or args.json))
    except DataError as e:
        if not args.json:
            raise
        print(json.dumps({"error": str(e), "file": e.file, "line": e.line, "record": e.record, "field": e.field,
                          "problem": e.problem, "hint": e.hint,
                          "detected": e.detected.to_dict() if e.detected is not None else None},
                         indent=2, ensure_ascii=False))
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print(report.text(shown=args.shown))
    return 0
