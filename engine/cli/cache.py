"""`peft-studio cache [list|clear] [--older-than DAYS] [--json]`: the prepared-data cache.

The data cache (engine/data/cache.py) keeps prepared (tokenized) data so that a rerun with the same
inputs skips straight to training; this lists it (what, how big, last used) or clears it.
"""

from __future__ import annotations

import json
import time


def add_parser(sub) -> None:
    c = sub.add_parser("cache", help="list or clear the prepared-data cache",
                       description="The data cache keeps prepared (tokenized) data so that a rerun "
                                   "skips straight to training.")
    c.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    c.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="clear only entries unused for this many days")
    c.add_argument("--json", action="store_true", help="list as JSON")
    c.set_defaults(func=run)


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


def run(args) -> int:
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
