"""What to do next when a run fails: one concrete sentence by the kind of failure."""

from __future__ import annotations

from engine.errors import ConfigError, UserError
from engine.methods.registry import REGISTRY


def hint_for(exc: BaseException, cfg=None) -> str:
    """A concrete next step for the user, by the kind of failure (``cfg``: the RunConfig, for
    levers that name its own values)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if "out of memory" in text or "outofmemory" in text or isinstance(exc, MemoryError):
        levers = []
        if cfg is not None:
            if cfg.train.batch_size > 1:
                levers.append(f"a smaller batch (train.batch_size {cfg.train.batch_size} → "
                              f"{max(1, cfg.train.batch_size // 2)}, with train.grad_accum × 2 to keep the "
                              "effective batch)")
            if not cfg.train.gradient_checkpointing:
                levers.append("gradient checkpointing (train.gradient_checkpointing: true)")
            spec = REGISTRY.get(cfg.method.name)
            variant = spec.quantized_variant if spec is not None else None
            if variant:
                levers.append(f"{variant} (a 4-bit base, about a quarter of the weight memory)")
            levers.append(f"a shorter data.max_length (now {cfg.data.max_length})")
            if cfg.train.optimizer == "adamw_torch":
                levers.append("an 8-bit optimizer (train.optimizer: adamw_8bit)")
        else:
            levers = ["a smaller batch", "gradient checkpointing", "qlora"]
        return "Out of memory. Try " + "; or ".join(levers) + "."
    if isinstance(exc, ConfigError):
        return "Fix the named field in the run file and start again."
    if isinstance(exc, UserError):
        # The user's own mistake (a data file, a model name): its message already says what to
        # fix; never "report it", which is for the project's faults.
        return "Fix what the message names and start again."
    if "nan" in text or "inf" in text:
        return "The loss diverged: lower train.lr or enable gradient clipping (train.max_grad_norm)."
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return "Check that the path exists and that you may write to the run folder."
    return "See the log for details; if it persists, report it with the run's events.jsonl."
