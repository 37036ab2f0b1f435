"""CLI verbs `export`, `merge`, `merge-adapters` and `chat` (registered by engine.cli).

    peft-studio export RUN_DIR --adapter | --merge [--dtype bf16] | --gguf q4_k_m | --ollama [TYPE]
                       | --gguf-lora [f32|f16] [--with-base TYPE]  [--checkpoint final|best|checkpoint-N|base]
                       [--no-verify] [--dry-run] [--out DIR]
    peft-studio merge RUN_DIR [--dtype bf16] [--out DIR]            (= export --merge)
    peft-studio merge-adapters A B --weights 0.7,0.3 --method ties [--density 0.5] --out DIR
    peft-studio chat RUN_DIR [--source final] [--compare [A B]]

Export errors are printed as one plain line with exit code 2, like every other user error.
"""

from __future__ import annotations

import argparse
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


def _chosen_format(args) -> tuple[str, str | None]:
    """(registry format name, option) from the mutually exclusive flags."""
    if args.gguf:
        return "gguf", args.gguf
    if args.ollama:
        return "ollama", None if args.ollama is True else args.ollama
    if args.gguf_lora:
        return "gguf-lora", None if args.gguf_lora is True else args.gguf_lora
    if args.merge:
        return "merged", args.dtype
    return "adapter", None


def default_option(fmt) -> str | None:
    """The format's default option, or the first available one after it (Q4_K_M needs llama.cpp;
    without it, Q8_0)."""
    from engine.export.formats import _option_choices

    choices = _option_choices(fmt)
    names = [c.value for c in choices]
    if fmt.default_option is None:
        return None
    start = names.index(fmt.default_option)
    for c in choices[start:] + choices[:start][::-1]:
        if c.available:
            return c.value
    return fmt.default_option


def print_sizes(info, which, only: str | None, stream=None) -> None:
    """The --dry-run table: every format and option with its size (or why it cannot be made)."""
    from engine.export.formats import FORMATS, estimate_sizes

    stream = stream or sys.stdout
    label = which or "final"
    print(f"Sizes of the exports of {info.name} ({label}), before exporting:", file=stream)
    for e in estimate_sizes(info, which, [only] if only else None):
        if only is None and e.format == "ollama":
            continue  # the same file as gguf, plus a Modelfile of a few hundred bytes
        fmt = FORMATS[e.format]
        opt = f"{fmt.option_label} {e.option}" if e.option else ""
        line = f"  {e.format:<10} {opt:<22} {e.text():>12}"
        if not e.available:
            line += f"   not available: {e.reason}"
        print(line, file=stream)
    if only is None:
        print("  ollama: the gguf file of the same type, plus a Modelfile.", file=stream)


def cmd_export(args) -> int:
    from engine.export import load_run, normalize_dtype
    from engine.export.formats import get_format

    name, option = _chosen_format(args)
    if args.dry_run:
        from engine.export import ExportError

        try:
            info = load_run(args.run_dir)
            print_sizes(info, args.checkpoint, name if _explicit(args) else None)
        except ExportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    def job(progress):
        info = load_run(args.run_dir)
        fmt = get_format(name)
        opt = option
        if name == "merged":
            opt = normalize_dtype(option)
        elif opt is None:
            opt = default_option(fmt)
        if name == "gguf-lora" and args.with_base:
            from engine.export.gguf_lora import export_gguf_lora

            out = Path(args.out) if args.out else _default_out(info.run_dir, "gguf-lora", info.is_bare_adapter)
            return export_gguf_lora(info, out, args.checkpoint, opt or "f32", with_base=args.with_base,
                                    verify=args.verify, overwrite=args.force, progress=progress)
        kind = {"adapter": "adapter", "merged": f"merged-{opt}", "gguf": f"gguf-{opt}", "ollama": f"ollama-{opt}",
                "gguf-lora": f"gguf-lora-{opt}"}[name]
        if args.checkpoint and args.checkpoint != "final":
            kind += f"-{Path(args.checkpoint).name}"
        out = Path(args.out) if args.out else _default_out(info.run_dir, kind, info.is_bare_adapter)
        if name == "merged":
            from engine.export import export_merged

            return export_merged(info, out, args.checkpoint, opt, args.max_shard_size, overwrite=args.force,
                                 progress=progress)
        return fmt.run(info, out, option=opt, which=args.checkpoint, overwrite=args.force, progress=progress,
                       verify=args.verify)

    return _run_job(job)


def _explicit(args) -> bool:
    return bool(args.gguf or args.ollama or args.gguf_lora or args.merge or args.adapter)


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
    from engine.export.gguf_lora import LORA_TYPES
    from engine.export.gguf_quant import QUANT_TYPES
    from engine.export.loading import MERGE_DTYPES
    from engine.export.weighted import COMBINATIONS

    llama_types = ", ".join(n for n, q in QUANT_TYPES.items() if q.needs_llama_cpp)

    dtype_help = f"precision of the merged weights: {', '.join(MERGE_DTYPES)} (or fp32/bf16/fp16); " \
                 "auto = the base checkpoint's own dtype"

    e = sub.add_parser("export", help="export a run: adapter, merged model, GGUF, Ollama, GGUF LoRA adapter",
                       description="Export a run: the adapter folder (default), the adapter merged into a full "
                                   "model, a GGUF file for llama.cpp / LM Studio (with an Ollama Modelfile), or "
                                   "a LoRA in llama.cpp's adapter format. --dry-run lists every format's size.")
    e.add_argument("run_dir", help="the run folder (or a peft adapter folder)")
    what = e.add_mutually_exclusive_group()
    what.add_argument("--adapter", action="store_true", help="the peft adapter folder + README (default)")
    what.add_argument("--merge", action="store_true", help="a full safetensors model folder")
    what.add_argument("--gguf", choices=list(QUANT_TYPES), type=str.lower, metavar="TYPE",
                      help=f"a GGUF file of this type: {', '.join(QUANT_TYPES)} ({llama_types} need "
                           "llama-cpp-python: pip install 'peft-studio[llama]')")
    what.add_argument("--ollama", nargs="?", const=True, choices=list(QUANT_TYPES), type=str.lower, metavar="TYPE",
                      help="a GGUF file + Ollama Modelfile (default type q4_k_m, or q8_0 without llama.cpp)")
    what.add_argument("--gguf-lora", nargs="?", const=True, choices=list(LORA_TYPES), metavar="TYPE",
                      help="the LoRA as a llama.cpp GGUF adapter (f32 default, or f16), applied without merging")
    e.add_argument("--with-base", choices=list(QUANT_TYPES), type=str.lower, metavar="TYPE",
                   help="--gguf-lora: also write the base model as a GGUF of this type and a Modelfile")
    _common_export_args(e, dtype_help)
    e.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="GGUF: answer sample prompts in llama.cpp (or transformers' GGUF reader) and compare "
                        "with the merged model (default on; --no-verify to skip)")
    e.add_argument("--dry-run", action="store_true",
                   help="print the size of every export format and type (or of the one chosen) and stop")
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("merge", help="merge a run's adapter into its base (= export --merge)")
    m.add_argument("run_dir")
    _common_export_args(m, dtype_help)
    m.set_defaults(func=cmd_export, merge=True, gguf=None, ollama=None, gguf_lora=None, with_base=None,
                   adapter=False, verify=False, dry_run=False)

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
    p.add_argument("--checkpoint", help="which weights: final (default), best, latest, checkpoint-N, a path to an "
                                        "adapter folder, or base (the base model without the adapter)")
    p.add_argument("--max-shard-size", default="2GB", help="merged safetensors shard size (default 2GB)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
