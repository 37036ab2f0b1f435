"""Compare methods: the same data, seed and step budget for each method, one table
(`peft-studio compare-methods run.yaml --methods lora,ia3,...`, engine.cli.compare).

Each method trains in its own child process (``python -m engine.compare``: this module's
``child``, which calls ``engine.training.train`` directly, as `engine train` does, and measures
itself), so that its peak memory is its own: on a GPU, ``torch.cuda.max_memory_allocated()`` in the child, its peak statistics
reset before the method trains (``reset_peak_memory`` / ``peak_memory``); on the CPU, the child's
peak RSS from the kernel (wait4's ru_maxrss). The table's header says which it is.
Tokens/s, losses and the trainable count come from the run's events.jsonl. Where the data is
the bundled demo set, the parent then loads each adapter onto the base and scores held-out
answers with the demo's persona metric.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import atomic
from engine.config import RunConfig
from engine.console import offline_env
from engine.data.demo import DEMO_TRAIN, load_heldout, score_answers
from engine.demo import answers
from engine.errors import ConfigError, UserError
from engine.events import StreamSink, parse_event_line, read_events
from engine.methods import get_method
from engine.methods.storage import load_trained
from engine.models import load_model, load_tokenizer
from engine.sysinfo import cpu_name
from engine.training import StopFlag, install_signal_handlers, train

BEGIN = "<!-- compare-methods:begin -->"
END = "<!-- compare-methods:end -->"

# When the run file's lr (tuned for LoRA) does not suit a method, it starts from the method's
# ``suggested_lr`` (engine.methods.spec): starting points from the methods' papers and peft's
# examples, not tuned results. The table prints the lr each method used, and --lr NAME=VALUE
# overrides any of them.


@dataclass
class Row:
    method: str
    lr: float
    status: str = "not run"
    error: str = ""
    trainable: int | None = None
    total: int | None = None
    adapter_bytes: int | None = None
    peak_bytes: int | None = None
    peak_kind: str | None = None   # the device whose peak peak_bytes is: "cuda" or "cpu" (PEAKS)
    tokens_per_s: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    score: float | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)


def method_configs(base, methods: list[str], steps: int | None, lrs: dict[str, float], out: Path) -> list:
    """One RunConfig per method: the run file's data/model/train settings, the method's own
    defaults (or the run file's fields when it names that method), its lr, its own output_dir."""
    out_cfgs = []
    for name in methods:
        cfg = base if base.method.name == name else base.with_overrides([f"method.name={name}"])
        cfg = cfg.with_overrides([f"output_dir={out / name}"])
        if steps:
            cfg.train.max_steps = steps
        suggested = get_method(name).suggested_lr
        if name in lrs:
            cfg.train.lr = lrs[name]
        elif suggested and name != base.method.name:
            cfg.train.lr = suggested
        try:
            cfg.validate()
        except ConfigError as e:
            out_cfgs.append((name, cfg, str(e)))
            continue
        out_cfgs.append((name, cfg, None))
    return out_cfgs


def parse_lrs(items: list[str]) -> dict[str, float]:
    """``--lr METHOD=LR`` items as {method: lr}; ConfigError naming ``--lr`` for a bad one."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError("--lr", "must look like METHOD=LR, e.g. ia3=1e-2", item) from None
    return out


# What "peak memory" is on each device: (column header, cell suffix in a mixed table, footnote).
PEAKS = {
    "cuda": ("peak GPU memory (max allocated)", "GPU",
             "`torch.cuda.max_memory_allocated()` of the method's training process, its peak statistics reset "
             "before the method trains: the most its tensors took at once (the caching allocator reserves more)"),
    "cpu": ("peak RSS (CPU)", "RSS",
            "peak resident set size of the method's training process (the kernel's ru_maxrss): weights, "
            "activations, optimizer state and the Python/torch runtime"),
}


def reset_peak_memory(device: str) -> None:
    """Start ``device``'s peak statistic afresh (on CUDA, ``torch.cuda.reset_peak_memory_stats()``;
    on the CPU the peak RSS is the process's own and cannot be reset, hence a process per method)."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> int | None:
    """This process's peak memory on ``device``, in bytes: CUDA's ``max_memory_allocated()`` since
    ``reset_peak_memory`` (what tensors used, not what the allocator reserved), or on the CPU the
    peak RSS since the process started."""
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    try:
        import resource
    except ImportError:  # Unix only
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child(argv: list[str]) -> int:
    """``python -m engine.compare PEAK_JSON RUN_YAML``: train the run file in this process as
    `engine train RUN_YAML --format json --no-stdin` would (events on stdout, exit 0 when it
    finished or stopped, 1 when it failed, 2 for a bad run file), then write
    ``{"device", "peak_bytes"}`` to PEAK_JSON."""
    peak_file, run_file = Path(argv[0]), argv[1]
    offline_env()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    reset_peak_memory(device)
    # stdout carries only events; anything a library prints goes to stderr instead.
    events_out, sys.stdout = sys.stdout, sys.stderr
    try:
        try:
            cfg = RunConfig.load(run_file)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        stop = StopFlag()
        install_signal_handlers(stop)
        result = train(cfg, sinks=[StreamSink(events_out)], stop=stop)
        return 0 if result.status in ("finished", "stopped") else 1
    finally:
        sys.stdout = events_out
        atomic.write_text(peak_file, json.dumps({"device": device, "peak_bytes": peak_memory(device)}))


def train_child(cfg, log_path: Path) -> tuple[int, dict, float]:
    """Train in a child process; returns (exit code, its peak memory, seconds). The peak is
    ``{"device", "peak_bytes"}``: the child's own CUDA measurement on a GPU, else its peak RSS
    from wait4."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_file = run_dir / "compare-run.yaml"
    peak_file = run_dir / "compare-peak.json"
    peak_file.unlink(missing_ok=True)
    cfg.save(run_file)
    t0 = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "engine.compare", str(peak_file), str(run_file)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # wait4 (not Popen.wait) returns the resource usage of exactly this child.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.time() - t0
    try:
        peak = json.loads(peak_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # the child died before it could write it
        peak = {"device": None, "peak_bytes": None}
    if peak["device"] != "cuda":
        peak = {"device": peak["device"] or "cpu", "peak_bytes": usage.ru_maxrss * 1024}  # KiB on Linux
    return proc.returncode, peak, seconds


def summarize(row: Row, run_dir: Path, peak: dict | None, log_path: Path | None = None) -> Row:
    """Fill ``row`` from the run's events and the child's peak memory (``train_child``). A run
    refused before it started has no events.jsonl (no run folder is written then): its events
    are read from the child's output, ``log_path``."""
    events = read_events(run_dir / "events.jsonl")
    if not events and log_path is not None and log_path.exists():
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        events = [e for e in map(parse_event_line, lines) if e is not None]
    steps = [e for e in events if e["event"] == "step" and e.get("loss") is not None]
    for e in events:
        if e["event"] == "started":
            row.trainable, row.total = e.get("trainable_params"), e.get("total_params")
            row.extra["device"] = e.get("device")
        elif e["event"] == "finished":
            row.status = "finished"
            row.eval_loss = (e.get("metrics") or {}).get("eval_loss")
        elif e["event"] == "failed":
            row.status, row.error = "failed", e.get("error", "")
    if steps:
        last = steps[-3:]  # one batch's loss is noisy; the mean of the last three steps is steadier
        row.train_loss = sum(e["loss"] for e in last) / len(last)
        row.tokens_per_s = steps[-1].get("tokens_per_s")  # the run's average so far, at its end
    if peak:
        row.peak_bytes, row.peak_kind = peak.get("peak_bytes"), peak.get("device")
    adapter = run_dir / "adapter"
    if adapter.exists():
        row.adapter_bytes = sum(f.stat().st_size for f in adapter.glob("*.safetensors"))
    return row


def is_demo_data(cfg) -> bool:
    """Whether the run trains on the bundled demo data (then answers can be scored)."""
    try:
        return Path(cfg.data.path).resolve() == DEMO_TRAIN.resolve()
    except OSError:
        return False


def demo_scores(cfg_by_method: dict, rows: dict[str, Row], prompts: int, log) -> float | None:
    """Score each trained adapter (and the base) on held-out demo prompts; returns the base's."""
    import torch

    any_cfg = next(iter(cfg_by_method.values()))
    tokenizer = load_tokenizer(any_cfg.model.name_or_path, offline=any_cfg.model.offline)
    convs = [h["messages"] for h in load_heldout()[:prompts]]
    base_score = score_answers(answers(load_model(any_cfg.model, quantization=None), tokenizer, convs))
    log(f"base model: persona score {base_score:.2f} on {len(convs)} held-out prompts")
    for name, cfg in cfg_by_method.items():
        row = rows[name]
        if row.status != "finished":
            continue
        spec = get_method(name)
        base = load_model(cfg.model, quantization=spec.needs_quantization or cfg.model.quantization)
        model = load_trained(base, Path(cfg.output_dir) / "adapter")
        row.score = score_answers(answers(model, tokenizer, convs))
        log(f"{name}: persona score {row.score:.2f}")
        del model, base
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return base_score


def machine() -> str:
    import peft
    import torch
    import transformers

    cpu = cpu_name()
    try:
        import psutil

        ram = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        ram = ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores{ram}, {gpu}; Python {platform.python_version()}, torch "
            f"{torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")


def _num(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _bytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _peak_kinds(rows: list[Row]) -> set[str]:
    return {r.peak_kind for r in rows if r.peak_kind in PEAKS and r.peak_bytes is not None}


def peak_header(rows: list[Row]) -> str:
    kinds = _peak_kinds(rows)
    return PEAKS[kinds.pop()][0] if len(kinds) == 1 else "peak memory"


def _peak_cell(r: Row, mixed: bool) -> str:
    cell = _bytes(r.peak_bytes)
    return f"{cell} ({PEAKS[r.peak_kind][1]})" if mixed and r.peak_kind in PEAKS and r.peak_bytes else cell


def table(rows: list[Row], base_score: float | None, scored: bool) -> str:
    mixed = len(_peak_kinds(rows)) > 1
    head = ["method", "lr", "trainable params", "adapter size", peak_header(rows), "tokens/s", "train loss",
            "eval loss"] + (["persona score"] if scored else []) + ["time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if scored and base_score is not None:
        lines.append("| base model (untrained) | — | — | — | — | — | — | — | " + f"{base_score:.2f} | — |")
    for r in rows:
        if r.status != "finished":
            cells = [r.method, f"{r.lr:g}", f"{r.status}: {r.error[:80]}"] + [""] * (len(head) - 3)
        else:
            pct = f" ({100 * r.trainable / r.total:.2f}%)" if r.trainable and r.total else ""
            cells = [r.method, f"{r.lr:g}", _num(r.trainable) + pct, _bytes(r.adapter_bytes), _peak_cell(r, mixed),
                     _f(r.tokens_per_s, ".0f"), _f(r.train_loss), _f(r.eval_loss)]
            cells += [_f(r.score, ".2f")] if scored else []
            cells += [f"{r.seconds:.0f} s" if r.seconds else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows, base_score, scored, base_cfg, steps_note: str, command: str) -> str:
    kinds = _peak_kinds(rows) or {"cpu"}
    peak = "; ".join(f"{PEAKS[k][0]}: {PEAKS[k][2]}" if len(kinds) > 1 else PEAKS[k][2] for k in sorted(kinds))
    t = base_cfg.train
    parts = [
        f"Model `{base_cfg.model.name_or_path}`, data `{base_cfg.data.path}` (max_length {base_cfg.data.max_length}, "
        f"validation split {base_cfg.data.validation_split}), {steps_note}, batch {t.batch_size} × accumulation "
        f"{t.grad_accum}, seed {t.seed}, optimizer {t.optimizer}, schedule {t.scheduler}.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Command: `{command}`",
        "",
        table(rows, base_score, scored),
        "",
        f"Train loss: mean of the last three steps. Peak memory: {peak}. Adapter size: the saved "
        "`*.safetensors` (a full fine-tune saves the whole model). Tokens/s: real (non-padding) tokens per second "
        "over the run." + (" Persona score: share of held-out answers in the taught style (1.0 = all), "
                           "greedy decoding." if scored else ""),
    ]
    return "\n".join(parts)


def update_doc(path: Path, body: str) -> None:
    """Replace the comparison section of the markdown file ``path`` (or append one)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Comparison\n\n" + block + "\n"
    atomic.write_text(path, text)


def compare_methods(base: RunConfig, methods: list[str], *, steps: int | None = None,
                    lrs: dict[str, float] | None = None, out: Path = Path("runs/compare"), prompts: int = 10,
                    doc: Path | None = None, command: str = "", log=None) -> tuple[list[Row], str]:
    """Train each of ``methods`` on ``base``'s data, seed and budget (``steps`` optimizer steps,
    default the run file's), one child process each, and tabulate them. Writes
    ``out/comparison.md`` (and the comparison section of ``doc``); returns the rows and the report.
    ConfigError for an unknown method or an empty list."""
    log = log or (lambda msg: None)
    if not methods:
        raise ConfigError("--methods", "name at least one method")
    for m in methods:
        get_method(m)  # unknown names fail now, with the list of valid ones
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps_total = steps or (base.train.max_steps if base.train.max_steps > 0 else None)
    steps_note = (f"{steps_total} optimizer steps per method" if steps_total
                  else f"{base.train.epochs:g} epochs per method")

    rows: dict[str, Row] = {}
    cfgs = {}
    for name, cfg, error in method_configs(base, methods, steps, lrs or {}, out):
        row = rows[name] = Row(name, cfg.train.lr)
        if error:
            row.status, row.error = "invalid", error
            log(f"{name}: {error}")
            continue
        log(f"{name}: training ({steps_note}, lr {cfg.train.lr:g})…")
        code, peak, seconds = train_child(cfg, out / f"{name}.log")
        summarize(row, Path(cfg.output_dir), peak, out / f"{name}.log")
        row.seconds = seconds
        if row.status != "finished":
            row.error = row.error or f"exit code {code}; see {out / f'{name}.log'}"
            log(f"{name}: {row.status}: {row.error}")
            continue
        cfgs[name] = cfg
        log(f"{name}: loss {_f(row.train_loss)}, eval {_f(row.eval_loss)}, {_f(row.tokens_per_s, '.0f')} tok/s")
    scored = bool(prompts) and is_demo_data(base) and bool(cfgs)
    base_score = demo_scores(cfgs, rows, prompts, log) if scored else None
    body = report(list(rows.values()), base_score, scored, base, steps_note, command)
    atomic.write_text(out / "comparison.md", body + "\n")
    if doc:
        update_doc(Path(doc), body)
        log(f"updated {doc}")
    return list(rows.values()), body


if __name__ == "__main__":  # the child that trains one method (train_child)
    sys.exit(child(sys.argv[1:]))
