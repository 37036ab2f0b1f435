"""CLI verbs `export`, `merge`, `merge-adapters` and `chat` (registered by engine.cli).

    peft-studio export RUN_DIR --adapter | --merge [--dtype bf16] | --gguf q8_0 [--out DIR]
    peft-studio merge RUN_DIR [--dtype bf16] [--out DIR]            (= export --merge)
    peft-studio merge-adapters A B --weights 0.7,0.3 --method ties [--density 0.5] --out DIR
    peft-studio chat RUN_DIR [--source final] [--compare [A B]]

Export errors are printed as one plain line with exit code 2, like every other user error.
"""

from __future__ import annotations

import sys
from pathlib import Path


class TqdmProgress:
    """engine.export progress callbacks → tqdm bars (sized stages) and log lines (the others)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.stage = None

    def __call__(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            if total is None:
                print(f"· {stage}…", file=self.stream, flush=True)
            else:
                self.bar = tqdm(total=total, desc=stage, file=self.stream, dynamic_ncols=True, leave=True)
        if self.bar is not None and done is not None:
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _default_out(run_dir: Path, kind: str, is_bare_adapter: bool) -> Path:
    if is_bare_adapter:
        return run_dir.with_name(f"{run_dir.name}-{kind}")
    return run_dir / "exports" / kind


def _report(result) -> None:
    if result.note:
        print(f"note: {result.note}", file=sys.stderr)
    print(result.summary())


def _run_job(job) -> int:
    """Run one export job with a progress bar: a user error prints one line (exit 2)."""
    from engine.export import ExportError

    progress = TqdmProgress()
    try:
        result = job(progress)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    _report(result)
    return 0


def cmd_export(args) -> int:
    from engine.export import export_adapter, export_gguf, export_merged, load_run, normalize_dtype

    def job(progress):
        info = load_run(args.run_dir)
        which = args.checkpoint
        if args.gguf:
            out = Path(args.out) if args.out else _default_out(info.run_dir, f"gguf-{args.gguf}", info.is_bare_adapter)
            return export_gguf(info, out, args.gguf, which, verify=args.verify, overwrite=args.force,
                               progress=progress)
        if args.merge:
            dtype = normalize_dtype(args.dtype)
            out = Path(args.out) if args.out else _default_out(info.run_dir, f"merged-{dtype}", info.is_bare_adapter)
            return export_merged(info, out, which, dtype, args.max_shard_size, overwrite=args.force,
                                 progress=progress)
        out = Path(args.out) if args.out else _default_out(info.run_dir, "adapter", info.is_bare_adapter)
        return export_adapter(info, out, which, overwrite=args.force, progress=progress)

    return _run_job(job)


def cmd_merge_adapters(args) -> int:
    from engine.export import merge_adapters

    return _run_job(lambda progress: merge_adapters(
        args.adapters, args.weights or ",".join(["1"] * len(args.adapters)), args.out, method=args.method,
        density=args.density, base=args.base, svd_rank=args.svd_rank, seed=args.seed, overwrite=args.force,
        progress=progress))


def cmd_chat(args) -> int:
    from engine.export import ExportError
    from engine.inference import GenerationSettings
    from engine.playground import Playground, chat_loop

    try:
        pg = Playground(args.run_dir, quantized=False if args.full_precision else None)
        if args.compare is not None:
            sources = list(args.compare) if args.compare else list(pg.default_pair())
            if len(sources) != 2:
                raise ExportError("--compare takes two sources (e.g. base final), or none for base vs final.")
        else:
            sources = [args.source or pg.default_pair()[1]]
        valid = pg.sources()
        for s in sources:
            if s not in valid:
                raise ExportError(f"No source {s!r} in this run; choose from {', '.join(valid)}.")
        print(f"Loading {', '.join(sources)} …", file=sys.stderr, flush=True)
        pg.load()
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=args.seed)
    return chat_loop(pg, sources, settings, system=args.system)


def add_parser(sub) -> None:
    from engine.export.loading import MERGE_DTYPES
    from engine.export.to_gguf import GGUF_TYPES
    from engine.export.weighted import COMBINATIONS

    dtype_help = f"precision of the merged weights: {', '.join(MERGE_DTYPES)} (or fp32/bf16/fp16); " \
                 "auto = the base checkpoint's own dtype"

    e = sub.add_parser("export", help="export a run's adapter, a merged model or a GGUF file",
                       description="Export a run: the adapter folder (default), the adapter merged into a full "
                                   "model, or a GGUF file for llama.cpp.")
    e.add_argument("run_dir", help="the run folder (or a peft adapter folder)")
    what = e.add_mutually_exclusive_group()
    what.add_argument("--adapter", action="store_true", help="the peft adapter folder + README (default)")
    what.add_argument("--merge", action="store_true", help="a full safetensors model folder")
    what.add_argument("--gguf", choices=GGUF_TYPES, type=str.lower, help="a GGUF file of this type")
    _common_export_args(e, dtype_help)
    e.add_argument("--verify", action="store_true", help="GGUF: load the file back and compare logits")
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("merge", help="merge a run's adapter into its base (= export --merge)")
    m.add_argument("run_dir")
    _common_export_args(m, dtype_help)
    m.set_defaults(func=cmd_export, merge=True, gguf=None, adapter=False, verify=False)

    w = sub.add_parser("merge-adapters", help="combine LoRA adapters with weights into one adapter",
                       description="Weighted merge of LoRA adapters (peft's add_weighted_adapter).")
    w.add_argument("adapters", nargs="+", help="run folders or adapter folders (two or more)")
    w.add_argument("--weights", help="one weight per adapter, comma-separated, e.g. 0.7,0.3 (default: all 1)")
    w.add_argument("--method", choices=COMBINATIONS, default="linear", help="how to combine (default linear)")
    w.add_argument("--density", type=float, help="ties/dare: fraction of entries kept (default 0.5)")
    w.add_argument("--svd-rank", type=int, help="svd: rank of the result (default: the largest input rank)")
    w.add_argument("--base", help="base model, when the adapters' configs do not agree on it")
    w.add_argument("--seed", type=int, default=0, help="dare: seed for the random pruning")
    w.add_argument("--out", required=True, help="output adapter folder")
    w.add_argument("--force", action="store_true", help="replace an existing output folder")
    w.set_defaults(func=cmd_merge_adapters)

    c = sub.add_parser("chat", help="chat with a run's tuned model in the terminal",
                       description="Chat with a run in the terminal; --compare shows two sources answering "
                                   "the same messages (e.g. base vs final, or checkpoint vs checkpoint).")
    c.add_argument("run_dir")
    c.add_argument("--source", help="base, final (default) or checkpoint-N")
    c.add_argument("--compare", nargs="*", metavar="SOURCE",
                   help="answer with two sources in turn (default: base final)")
    c.add_argument("--max-new-tokens", type=int, default=256)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    c.add_argument("--top-p", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--system", help="a system message for the conversation")
    c.add_argument("--full-precision", action="store_true",
                   help="QLoRA runs: load the base unquantized instead of in 4-bit as trained")
    c.set_defaults(func=cmd_chat)


def _common_export_args(p, dtype_help: str) -> None:
    p.add_argument("--out", help="output folder (default: RUN_DIR/exports/<kind>)")
    p.add_argument("--dtype", default="auto", help=dtype_help)
    p.add_argument("--checkpoint", help="which adapter: final (default), latest, or checkpoint-N")
    p.add_argument("--max-shard-size", default="2GB", help="merged safetensors shard size (default 2GB)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
