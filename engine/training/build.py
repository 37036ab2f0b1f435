"""The model exactly as a training run uses it: weights loaded, method applied, speed levers
set (attention, frozen-embedding dtype) and the loss chosen.

One sequence for training (``engine.training.run``) and the time probe
(``engine.estimate.timing``), so that a probe times what training runs — the attention kernel and the chunked loss change a step's time
by several times, and a probe that skipped them was off by that much.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError
from engine.methods import effective_quantization, prepare_for_training
from engine.models import count_parameters, has_weights, load_model, resolve_dtype, resolve_source
from engine.models.arch import load_arch
from engine.training import speed
from engine.training.loss import make_loss


@dataclass
class Built:
    model: object
    total_params: int
    quantization: str | None
    attention: str
    loss: object | None        # engine.training.loss.LinearCrossEntropyLoss, or None: the model's own loss
    loss_note: str
    weights: str               # "real" | "random" (a folder with only config.json, for timing)


def build_for_training(cfg, device: str, packing: bool, tokenizer_path: str | None = None, log=None,
                       allow_random: bool = False, sharded: bool = False) -> Built:
    """Load ``cfg.model`` on ``device`` and ready it for training ``cfg``.

    ``allow_random``: a model folder with a config.json but no weights gets random weights of the
    same shapes (speed does not depend on the values); quantized bases need real weights.
    ``sharded``: FSDP/DeepSpeed place the weights later (engine.models.load_model)."""
    log = log or (lambda msg: None)
    quant = effective_quantization(cfg)
    weights = "real"
    if allow_random and not _has_real_weights(cfg):
        if quant:
            raise ConfigError("model.quantization", "timing a quantized base needs its weights; this model "
                              "folder has only a config.json")
        model, weights = _random_model(cfg, device), "random"
    else:
        log(f"Loading weights ({quant or 'full precision'}) on {device}")
        model = load_model(cfg.model, quantization=quant or None, device=device, sharded=sharded)
    total = count_parameters(model)
    model = prepare_for_training(model, cfg, quantized=bool(quant), tokenizer_path=tokenizer_path)
    attention = speed.configure(model, cfg, packing, quantized=bool(quant), log=log)
    loss, note = make_loss(model, cfg.train.loss_impl, cfg.train.loss_chunk_tokens, device)
    return Built(model, total, quant, attention, loss, note, weights)


def _has_real_weights(cfg) -> bool:
    try:
        src = resolve_source(cfg.model.name_or_path, cfg.model.offline)
    except Exception:  # load_model will say what is wrong with the name
        return True
    return src.kind == "gguf" or has_weights(Path(src.path))


def _random_model(cfg, device: str):
    from transformers import AutoModelForCausalLM

    arch = load_arch(cfg.model)
    model = AutoModelForCausalLM.from_config(arch.hf_config, dtype=resolve_dtype(cfg.model.dtype, device))
    return model.to(device)
