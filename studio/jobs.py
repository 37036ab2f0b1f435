"""The studio's ML jobs, as plain functions (no Qt): run in the job helper process.

Why a process and not a thread: importing torch/transformers and building meta models holds
the GIL for seconds at a time, which froze the window for up to 4 s during start-up when these
ran in threads. In a helper process they cost the UI nothing (DESIGN §2.2's reasoning, applied
to short jobs too). Arguments and results cross the process boundary pickled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

PREVIEW_ROWS = 40        # examples rendered for the table
LENGTH_SAMPLE = 20_000   # examples tokenized for the histogram (enough for the shape, bounded time)


def warm_up() -> float:
    t = time.perf_counter()
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    return time.perf_counter() - t


def inspect(name_or_path: str, trust_remote_code: bool, offline: bool) -> dict:
    from engine.inspect import inspect_model

    return inspect_model(name_or_path, trust_remote_code=trust_remote_code, offline=offline)


def cached_models() -> list[str]:
    from engine.models import list_cached_models

    return list_cached_models()


def count(cfg) -> dict:
    from engine.estimate import count_params

    return count_params(cfg)


def estimate(cfg, gpu) -> dict:
    """The engine's estimate as a plain dict, or exact counts when the estimator is missing."""
    try:
        from engine.estimate import estimate as engine_estimate
    except ImportError:
        return {"missing": True, "counts": count(cfg)}
    try:
        r = engine_estimate(cfg, gpu=gpu)
    except TypeError:  # an estimator without GPU selection
        r = engine_estimate(cfg)
    keys = ("components", "peak_allocated", "peak_reserved", "device_total", "verdict", "gpu_name",
            "gpu_bytes", "total_params", "trainable_params", "adapter_bytes", "notes", "suggestions",
            "max_batch_size", "max_seq_len", "on_cpu", "layout", "processes")
    out = {k: getattr(r, k, None) for k in keys}
    out["components"] = dict(out["components"] or {})
    try:
        from engine.estimate.memory import LABELS

        out["labels"] = dict(LABELS)
    except ImportError:
        out["labels"] = {}
    out["missing"] = False
    return out


def gpu_list() -> list:
    """[(name, bytes)] of the GPUs the estimator knows, or [] when it publishes no list."""
    try:
        from engine.estimate.gpus import choices, parse_gpu
    except ImportError:
        return []
    out = []
    for name in choices():
        try:
            out.append((name, parse_gpu(name).total_bytes))
        except Exception:  # an ambiguous alias; the list has the sized names too
            pass
    return out


@dataclass
class Preview:
    format: str = ""
    reason: str = ""
    warnings: list = field(default_factory=list)
    n_train: int = 0
    n_validation: int = 0
    n_skipped: int = 0
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)      # [(text, trained)] per example
    lengths: list = field(default_factory=list)
    error: str = ""


_TOKENIZERS: dict = {}


def _tokenizer(name: str, trust: bool, offline: bool):
    key = (name, trust, offline)
    if key not in _TOKENIZERS:
        from engine.models import load_tokenizer

        _TOKENIZERS[key] = load_tokenizer(name, trust_remote_code=trust, offline=offline)
    return _TOKENIZERS[key]


def preview(data_cfg, model: tuple) -> Preview:
    """Read, detect, render and measure a data set for the data panel."""
    from engine.data import DataError, load_records, render_segments, token_lengths
    from studio.messages import plain_message

    try:
        loaded = load_records(data_cfg)
    except DataError as e:
        p = Preview(error=str(e))
        try:  # the columns still let the user fix the mapping
            from engine.data.readers import read_table

            p.columns = read_table(data_cfg.path).columns
        except Exception:
            pass
        return p
    p = Preview(format=loaded.format, reason=loaded.reason, warnings=list(loaded.warnings),
                n_train=len(loaded.train), n_validation=len(loaded.validation), n_skipped=loaded.n_skipped,
                columns=list(getattr(loaded, "columns", []) or []))
    try:
        tok = _tokenizer(*model)
    except Exception as e:  # the data is fine; only the rendering needs the model's tokenizer
        p.error = f"The examples cannot be rendered without the model's tokenizer: {plain_message(e)}"
        return p
    p.rows = [render_segments(r, tok, data_cfg) for r in loaded.train[:PREVIEW_ROWS]]
    p.lengths = token_lengths(loaded.train[:LENGTH_SAMPLE], tok, data_cfg)
    return p


JOBS = {f.__name__: f for f in (warm_up, inspect, cached_models, count, estimate, gpu_list, preview)}
