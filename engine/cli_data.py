"""`peft-studio data run.yaml [--json]` (the data report) and `peft-studio cache [list|clear]`.

``data`` reads the run's data exactly as training will (the same files, settings, tokenizer and
chat template; no model weights) and prints what it found: the format and why, the columns used
and ignored, every record not trained as written (by line), roles and turns, empty turns,
duplicates, prompts without an answer, placeholders, the token-length histogram and the share of
tokens that carry loss. It fills the data cache, so a ``train`` of the same run file afterwards
starts without preparing the data again. Exit code 2 (and, with --json, the error as JSON with
the detected preference shape) when the data cannot be trained as configured.

``cache`` lists the prepared-data cache (what, how big, last used) or clears it.
"""

from __future__ import annotations

import json
import sys
import time


def add_parser(subparsers) -> None:
    d = subparsers.add_parser("data", help="report on a run's data: format, columns, problems by line, lengths",
                              description="Read the run's data as training would and report what it found.")
    d.add_argument("run_file", help="run.yaml")
    d.add_argument("--json", action="store_true", help="print the whole report as JSON (every problem by line)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run-file field, e.g. --set data.max_length=1024")
    d.add_argument("--shown", type=int, default=5, help="items of each list shown in the text report")
    d.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    d.set_defaults(func=run_data)

    c = subparsers.add_parser("cache", help="list or clear the prepared-data cache",
                              description="The data cache keeps prepared (tokenized) data so that a rerun "
                                          "skips straight to training.")
    c.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    c.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="clear only entries unused for this many days")
    c.add_argument("--json", action="store_true", help="list as JSON")
    c.set_defaults(func=run_cache)


class _StderrReporter:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr)

    def warn(self, msg: str) -> None:
        if not self.quiet:
            print(f"warning: {msg}", file=sys.stderr)


def run_data(args) -> int:
    from engine.cli import load_config
    from engine.data import DataError, data_report
    from engine.methods import get_method
    from engine.models import load_tokenizer

    cfg = load_config(args.run_file, args.set)
    cfg.validate()
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
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


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _ago(t: float) -> str:
    s = max(0.0, time.time() - t)
    if s < 3600:
        return f"{s / 60:.0f} min ago"
    if s < 86400 * 2:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} days ago"


def run_cache(args) -> int:
    from engine.data import cache

    root = cache.cache_root()
    if args.action == "clear":
        n, freed = cache.clear(args.older_than)
        print(f"Removed {n} entries ({_size(freed)}) from {root}.")
        return 0
    entries = cache.entries()
    if args.json:
        print(json.dumps({"root": str(root), "limit_bytes": cache.limit_bytes(),
                          "entries": [{"kind": e.kind, "key": e.key, "bytes": e.size, "last_used": e.last_used,
                                       "source": e.meta.get("source"), "records": e.meta.get("records")
                                       or e.meta.get("rows"), "path": str(e.path)} for e in entries]}, indent=2))
        return 0
    total = sum(e.size for e in entries)
    print(f"Data cache {root}: {len(entries)} entries, {_size(total)} of {_size(cache.limit_bytes())}.")
    if entries:
        print(f"{'kind':9} {'size':>9} {'records':>9}  {'last used':13} source")
        for e in entries:
            n = e.meta.get("records") or e.meta.get("rows") or ""
            print(f"{e.kind:9} {_size(e.size):>9} {n!s:>9}  {_ago(e.last_used):13} {e.meta.get('source', '')}")
    return 0
