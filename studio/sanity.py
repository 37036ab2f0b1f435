"""Values a practitioner would question: warnings beside the field, never a reason to refuse Start.

Each rule reads the engine's own facts (the method's ``suggested_lr`` capability, the model's
hidden size from inspect_model, TrainConfig's defaults), never a method's name. Qt-free.
"""

from __future__ import annotations

from engine.config import RunConfig, TrainConfig
from engine.methods import get_method

# A learning rate this many times above, or below, the method's usual one is worth a second look.
# Usual ranges differ by orders of magnitude between methods (full fine-tuning ~5e-5, LoRA ~2e-4,
# IA³ and prompt tuning ~1e-2), so the bound is relative; 30× up and 100× down still admit every
# value the method's own papers use.
LR_HIGH_FACTOR = 30.0
LR_LOW_FACTOR = 100.0


def usual_lr(method_name: str) -> float:
    """The method's starting learning rate: its ``suggested_lr``, else the run file's default
    (2e-4, tuned for LoRA)."""
    try:
        lr = get_method(method_name).suggested_lr
    except Exception:  # noqa: BLE001 - an unknown method is already an error in the form
        lr = None
    return float(lr or TrainConfig().lr)


def sanity_warnings(cfg: RunConfig, model_info: dict | None = None) -> dict[str, str]:
    """{run-file path: warning} for ``cfg`` (``model_info``: inspect_model's dict, when known)."""
    out: dict[str, str] = {}
    hidden = (model_info or {}).get("hidden_size")
    r = getattr(cfg.method, "r", None)
    if isinstance(r, int) and hidden and r >= hidden:
        out["method.r"] = (f"rank {r} is not below this model's hidden size ({hidden}): the update is no "
                           f"longer low-rank and trains more than the layers it adapts. Ranks of 8–64 are usual.")
    lr, usual = cfg.train.lr, usual_lr(cfg.method.name)
    if lr > usual * LR_HIGH_FACTOR:
        out["train.lr"] = (f"{lr:g} is far above the usual {usual:g} for this method; training will likely "
                           "diverge (the loss jumps or becomes NaN).")
    elif lr == 0:
        out["train.lr"] = "a learning rate of 0 trains nothing."
    elif lr < usual / LR_LOW_FACTOR:
        out["train.lr"] = f"{lr:g} is far below the usual {usual:g} for this method; the loss will barely move."
    steps = cfg.train.max_steps
    if cfg.train.warmup_ratio >= 0.5:
        whole = "the whole run" if cfg.train.warmup_ratio >= 1 else f"{cfg.train.warmup_ratio:.0%} of the run"
        out["train.warmup_ratio"] = (f"warm-up takes {whole}: the learning rate barely reaches its peak "
                                     "before it decays.")
    if steps > 0:
        if cfg.train.eval_steps > steps:
            out["train.eval_steps"] = (f"every {cfg.train.eval_steps} steps never comes in a {steps}-step run: "
                                       "evaluation runs at the end only.")
    return out
