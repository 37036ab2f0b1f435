"""Time: a few real training steps on this machine, extrapolated to the whole run.

Memory can be predicted from config.json; speed cannot (kernels, clocks, drivers, CPU threads
all matter), so we measure. The probe prepares the run's data as training does (a sample of a
big set), plans the run's steps and tokens from the examples' real lengths
(``engine.estimate.workload``), builds the model through ``engine.training.build`` — the same attention
kernel, loss and dtypes as the run — and times real micro-batches of the run (the 25th, 50th and
75th percentile by tokens) after a warm-up, and the optimizer step on its own. The run's time is
then its tokens at the measured rate plus its steps' optimizer time, plus evaluation and
start-up. During training the ETA is refined from live step times (engine.training).

Without readable data (an estimate from a bare config.json) every step is assumed to hold
batch × max_length tokens and the result says so.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from engine.console import human_duration  # noqa: F401  (one duration formatter; re-exported here)
from engine.data import DataError, make_collator, prepare_data
from engine.errors import ConfigError
from engine.estimate.workload import FULL_ROW, PER_EXAMPLE, _micro_figures, attention_alpha, plan_workload
from engine.methods import get_method
from engine.models import load_tokenizer, resolve_source
from engine.training.build import build_for_training
from engine.training.from_adapter import adopted

SAMPLE_EXAMPLES = 20_000   # examples tokenized to learn the length distribution of a big set
QUANTILES = (0.25, 0.5, 0.75)


def count_examples(data_cfg) -> int | None:
    """Records in the training file without tokenizing (None when it cannot be told cheaply)."""
    p = Path(data_cfg.path)
    if not p.is_file():
        return None
    try:
        if p.suffix == ".jsonl":
            with p.open("rb") as fh:
                n = sum(1 for line in fh if line.strip())
        elif p.suffix == ".json":
            d = json.loads(p.read_text(encoding="utf-8"))
            n = len(d) if isinstance(d, list) else len(d.get("data", [])) if isinstance(d, dict) else 0
        elif p.suffix == ".csv":
            with p.open("rb") as fh:
                n = max(sum(1 for _ in fh) - 1, 0)
        else:
            return None
    except (OSError, ValueError):
        return None
    if data_cfg.max_examples and data_cfg.max_examples > 0:
        n = min(n, data_cfg.max_examples)
    if not data_cfg.validation_path:
        n = int(n * (1 - data_cfg.validation_split))
    return n


def _optimizer(cfg, params):
    import torch

    opt = cfg.train.optimizer
    if opt in ("adamw_8bit", "paged_adamw_8bit"):
        import bitsandbytes as bnb

        klass = bnb.optim.PagedAdamW8bit if opt.startswith("paged") else bnb.optim.AdamW8bit
        return klass(params, lr=cfg.train.lr)
    if opt == "sgd":
        return torch.optim.SGD(params, lr=cfg.train.lr)
    if opt == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=cfg.train.lr, scale_parameter=False, relative_step=False)
    return torch.optim.AdamW(params, lr=cfg.train.lr)


def _prepared(cfg, spec, progress):
    """(tokenizer, PreparedData, examples the run trains on) — or (tokenizer, None, None) when the
    data cannot be read; the probe then falls back to full-length synthetic batches."""
    tok = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code, cfg.model.offline)
    data_cfg = copy.deepcopy(cfg.data)
    cap = data_cfg.max_examples if data_cfg.max_examples and data_cfg.max_examples > 0 else None
    data_cfg.max_examples = min(cap or SAMPLE_EXAMPLES, SAMPLE_EXAMPLES)
    progress(f"Reading and tokenizing {data_cfg.path}")
    try:
        data = prepare_data(data_cfg, tok, seed=cfg.train.seed, extra_prompt_tokens=spec.virtual_tokens(cfg.method))
    except (DataError, FileNotFoundError, OSError) as e:
        progress(f"No data to measure ({e}); assuming full-length batches")
        return tok, None, None
    available = data.stats.get("examples_available", len(data.train))
    run_examples = min(available, cap) if cap else available
    # Examples dropped while encoding (too long, nothing to learn) are dropped from the rest alike.
    kept = len(data.train) / max(min(available, data_cfg.max_examples), 1)
    return tok, data, max(1, round(run_examples * kept))


def _synthetic(cfg, packed, vocab, virtual, attention, alpha):
    """Full-length examples, batch_size of them a micro-batch: what the run is at most (no data
    to go by)."""
    import torch

    b, L = cfg.train.batch_size, cfg.data.max_length
    n = count_examples(cfg.data) or b * cfg.train.grad_accum
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (b * L,), generator=g).tolist()
    examples = [{"input_ids": ids[i * L:(i + 1) * L], "labels": ids[i * L:(i + 1) * L]} for i in range(b)]
    work = plan_workload([L] * b, [L - 1] * b, cfg, packed, virtual, examples=n, attention=attention, alpha=alpha)
    return examples, work


def _timed_batches(work, k: int):
    """Indices into work.micro of the micro-batches to time: the run's quantiles by work."""
    order = sorted(range(len(work.micro)), key=lambda i: work.micro_work[i])
    picks = [order[min(len(order) - 1, int(q * len(order)))] for q in QUANTILES[:k]]
    return picks if len(picks) == k else (picks * k)[:k]


def probe_time(cfg, steps: int = 3, device: str | None = None, progress=None,
               process_start: float | None = None) -> dict:
    """Seconds per optimizer step here, and the whole run's extrapolated duration.

    ``steps``: micro-batches timed (after one warm-up). ``progress(str)`` hears what it is doing.
    ``process_start`` (a ``time.time()``): when the process began, so that start-up includes
    importing torch and transformers as a run's does (the CLI passes it)."""
    import torch

    if steps < 1:
        raise ConfigError("steps", "must be ≥ 1", steps)
    cfg = adopted(cfg.validate())  # a run continuing an adapter trains the adapter's settings
    progress = progress or (lambda msg: None)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec = get_method(cfg.method.name)
    packed = bool(cfg.train.packing) and spec.can_pack
    virtual = spec.input_tokens(cfg.method)   # positions added to every sequence (not key/value prefixes)

    imports_s = max(0.0, time.time() - process_start) if process_start else 0.0
    t0 = time.perf_counter()
    tok, data, run_examples = _prepared(cfg, spec, progress)
    t_data = time.perf_counter() - t0
    t1 = time.perf_counter()
    src = resolve_source(cfg.model.name_or_path, cfg.model.offline)
    built = build_for_training(cfg, device, packed, tokenizer_path=src.path, log=progress, allow_random=True)
    t_build = time.perf_counter() - t1
    model = built.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kind = PER_EXAMPLE if built.attention in ("sdpa_varlen", "flash_attention_2") else FULL_ROW
    alpha = attention_alpha(base.config, built.total_params)
    if data is not None:
        examples = data.train
        work = plan_workload([len(e["input_ids"]) for e in examples],
                             [sum(1 for y in e["labels"][1:] if y != -100) for e in examples],
                             cfg, packed, virtual, examples=run_examples, attention=kind, alpha=alpha)
    else:
        examples, work = _synthetic(cfg, packed, int(model.get_input_embeddings().weight.shape[0]), virtual,
                                    kind, alpha)
    collate = make_collator(tok, packing=packed, max_length=cfg.data.max_length)

    def batch(i):
        return {k: v.to(device) for k, v in collate([examples[j] for j in work.micro[i]]).items()}

    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(cfg, params)
    dtype = next(model.parameters()).dtype
    use_amp = device == "cuda" and dtype in (torch.bfloat16, torch.float16)   # the Trainer's bf16/fp16

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward_backward(i) -> float:
        sync()
        start = time.perf_counter()
        inputs = batch(i)     # collation is part of a step: the run's DataLoader collates in-process
        with torch.autocast(device, dtype=dtype, enabled=use_amp):
            loss = built.loss(model, inputs, None) if built.loss is not None else model(**inputs).loss
        loss.backward()
        sync()
        return time.perf_counter() - start

    def optimizer_step() -> float:
        sync()
        start = time.perf_counter()
        if cfg.train.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    picks = _timed_batches(work, steps)
    progress("Warming up (one step)")
    forward_backward(picks[len(picks) // 2])   # allocator, kernels, lazy optimizer state
    optimizer_step()
    timed, opt_times = [], []
    for n, i in enumerate(picks, 1):
        progress(f"Timing step {n} of {len(picks)} ({work.micro_tokens[i]} tokens)")
        timed.append({"tokens": work.micro_tokens[i], "work": work.micro_work[i], "seconds": forward_backward(i)})
        opt_times.append(optimizer_step())
    # Seconds per unit of work (a token, plus attention pairs weighted by alpha), so the run's long
    # examples and padded widths cost what their attention does, not only their token count.
    rate = sum(t["work"] for t in timed) / max(sum(t["seconds"] for t in timed), 1e-9)
    opt_s = sorted(opt_times)[len(opt_times) // 2]
    train_s = work.work / rate + work.steps * opt_s

    eval_s, evals = 0.0, 0
    if data is not None and data.eval:
        evals = (work.steps // cfg.train.eval_steps if cfg.train.eval_steps > 0 else 0) + 1
        eval_s = evals * _eval_seconds(model, data.eval, collate, cfg, packed, virtual, device, dtype, use_amp,
                                       sync, progress)

    scale_data = (run_examples / len(data.train)) if data is not None else 1.0
    startup_s = imports_s + t_data * scale_data + t_build
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "weights": built.weights,
           "attention": built.attention, "loss": built.loss_note, "packed": packed, "virtual_tokens": virtual,
           "from_data": data is not None, "examples": work.examples, "measured_examples": work.measured,
           "total_steps": work.steps, "steps_per_epoch": work.steps_per_epoch,
           "tokens": work.tokens, "largest_micro_batch": work.largest, "work": work.work, "real_tokens": work.real_tokens, "trained_tokens": work.trained_tokens,
           "padding_fraction": work.padding_fraction, "tokens_per_step": work.tokens_per_step,
           "timed": timed, "steps_timed": len(timed), "optimizer_step_s": opt_s, "exact_order": work.exact,
           "attention_alpha": alpha,
           "step_s": train_s / work.steps, "tokens_per_s": work.real_tokens / train_s if train_s > 0 else None,
           "train_s": train_s, "evaluations": evals, "eval_s": eval_s, "startup_s": startup_s,
           "eta_s": train_s + eval_s, "total_s": train_s + eval_s + startup_s}
    if device == "cuda":
        out["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
        out["max_memory_reserved"] = int(torch.cuda.max_memory_reserved())
    return out


def _eval_seconds(model, eval_examples, collate, cfg, packed, virtual, device, dtype, use_amp, sync,
                  progress) -> float:
    """One evaluation pass: forward only with full logits (the Trainer's eval path), timed on one
    batch and scaled by tokens."""
    import torch

    b = cfg.train.batch_size
    # prepare_data's Examples carry their lengths; only the timed batch's tokens are read.
    lengths = (eval_examples.lengths.tolist() if hasattr(eval_examples, "lengths")
               else [len(e["input_ids"]) for e in eval_examples])
    # The Trainer evaluates in order; the positions computed are each batch's, padding included.
    sizes = [_micro_figures(range(i, min(i + b, len(lengths))), lengths, packed, virtual, FULL_ROW, 0.0)[0]
             for i in range(0, len(lengths), b)]
    i = sorted(range(len(sizes)), key=lambda j: sizes[j])[len(sizes) // 2]
    progress("Timing an evaluation batch")
    inputs = {k: v.to(device) for k, v in collate(eval_examples[i * b:(i + 1) * b]).items()}
    with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=use_amp):
        sync()
        start = time.perf_counter()
        model(**inputs)
        sync()
        seconds = time.perf_counter() - start
    return sum(sizes) / sizes[i] * seconds
