"""`peft-studio eval RUN_OR_FOLDER`: the forgetting check for any run, exported adapter or merged
model — general-text NLL and greedy answers to general prompts, base vs tuned (engine.evaluate)."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="forgetting check of a run, adapter or merged model: general-text NLL "
                                    "and answers to general prompts, base vs tuned",
                       description="What did the fine-tune cost the base model? Scores the bundled general "
                                   "text and answers the bundled general prompts with the base and the tuned "
                                   "model (the base side is cached per base model).")
    p.add_argument("path", metavar="RUN_OR_FOLDER", help="a run folder, an adapter folder or a merged model folder")
    p.add_argument("--checkpoint", default="final", help="which weights of a run: final (default), best, latest, "
                                                         "checkpoint-N")
    p.add_argument("--base", help="the base model (needed for a merged model folder whose card does not name it)")
    p.add_argument("--passages", type=int, default=64, help="general passages scored (of 320; default 64)")
    p.add_argument("--prompts", type=int, default=16, help="general prompts answered (of 48; default 16)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="longest answer (default 32)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import UserError
    from engine.evals.forgetting import Settings, describe
    from engine.evaluate import forgetting_check

    if not 0 <= args.passages <= 320 or not 0 <= args.prompts <= 48 or args.max_new_tokens < 1:
        raise UserError("--passages must be 0–320, --prompts 0–48 and --max-new-tokens at least 1.")
    out = forgetting_check(args.path, args.checkpoint, args.base,
                           Settings(args.passages, args.prompts, args.max_new_tokens),
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    f = out["forgetting"]
    print(f"{describe(f)}")
    if f.get("general_nll_base") is not None:
        print(f"  general-text NLL: base {f['general_nll_base']:.4f}, tuned {f['general_nll_tuned']:.4f} nats/token "
              f"over {f['n_passages']} passages")
    return 0
