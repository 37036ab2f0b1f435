"""Time: a few real optimizer steps on this machine, extrapolated to the whole run.

Memory can be predicted from config.json; speed cannot (kernels, clocks, drivers, CPU threads
all matter), so we measure. The probe builds the model the way training does (real weights when
the folder has them, random ones of the same shape otherwise: the arithmetic is the same), wraps
it with the method, and times ``steps`` full steps of batch_size × max_length tokens after one
warm-up step. The run's ETA is refined from live step times during training (engine.train).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from engine.config import ConfigError


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


def total_steps(cfg, examples: int | None) -> int | None:
    t = cfg.train
    if t.max_steps and t.max_steps > 0:
        return t.max_steps
    if examples is None:
        return None
    # With packing several short examples share a row, so this is an upper bound.
    return max(1, math.ceil(t.epochs * math.ceil(examples / (t.batch_size * t.grad_accum))))


def _build(cfg, device: str):
    from transformers import AutoModelForCausalLM

    from engine.estimate.arch import load_arch
    from engine.methods import effective_quantization, prepare_for_training
    from engine.models import _has_weights, load_model, resolve_dtype, resolve_source

    quant = effective_quantization(cfg)
    weights = "random"
    try:
        src = resolve_source(cfg.model.name_or_path, cfg.model.offline)
        real = src.kind == "gguf" or _has_weights(Path(src.path))
    except Exception:
        real = False
    if real:
        model = load_model(cfg.model, quantization=quant or None, device=device)
        weights = "real"
    else:
        if quant:
            raise ConfigError("model.quantization", "timing a quantized base needs its weights; this model "
                              "folder has only a config")
        arch = load_arch(cfg.model)
        model = AutoModelForCausalLM.from_config(arch.hf_config, dtype=resolve_dtype(cfg.model.dtype, device))
        model.to(device)
    return prepare_for_training(model, cfg, quantized=bool(quant)), weights


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


def probe_time(cfg, steps: int = 3, device: str | None = None) -> dict:
    """Seconds per optimizer step here, and the whole run's extrapolated duration."""
    import torch

    from engine.methods import get_method

    if steps < 1:
        raise ConfigError("steps", "must be ≥ 1", steps)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, weights = _build(cfg, device)
    spec = get_method(cfg.method.name)
    B, L = cfg.train.batch_size, cfg.data.max_length
    vocab = int(model.get_input_embeddings().weight.shape[0])
    g = torch.Generator().manual_seed(0)
    if cfg.train.packing and not spec.prompt_based:
        ids = torch.randint(0, vocab, (1, B * L), generator=g)
        batch = {"input_ids": ids, "labels": ids.clone(),
                 "position_ids": (torch.arange(B * L) % L)[None]}
    else:
        ids = torch.randint(0, vocab, (B, L), generator=g)
        batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    use_amp = device == "cuda" and next(model.parameters()).dtype in (torch.bfloat16, torch.float16)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def one_step():
        for _ in range(cfg.train.grad_accum):
            with torch.autocast(device, dtype=next(model.parameters()).dtype, enabled=use_amp):
                loss = model(**batch).loss / cfg.train.grad_accum
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    one_step()          # warm-up: allocator, kernels, lazy optimizer state
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        one_step()
        sync()
        times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    n_steps = total_steps(cfg, count_examples(cfg.data))
    tokens = B * L * cfg.train.grad_accum
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "weights": weights,
           "step_s": step_s, "steps_timed": steps, "tokens_per_step": tokens,
           "tokens_per_s": tokens / step_s if step_s > 0 else None, "total_steps": n_steps,
           "eta_s": n_steps * step_s if n_steps else None}
    if device == "cuda":
        out["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
        out["max_memory_reserved"] = int(torch.cuda.max_memory_reserved())
    return out
