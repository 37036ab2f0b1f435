"""Before any process starts: can this run file's method, base and machine use its strategy?

Called by ``peft-studio launch`` (before writing files) and by every rank of ``engine train``
(after the method's own preflight). Each refusal is a ConfigError naming the field to change.
"""

from __future__ import annotations

import importlib.util

from engine.errors import ConfigError

_PATH = "train.distributed.strategy"


def check_strategy(cfg, *, on_gpu: bool, cluster: bool = False) -> None:
    """Raise ConfigError when ``cfg.train.distributed`` cannot run here.

    ``on_gpu``: the ranks will have CUDA GPUs. ``cluster``: the ranks run elsewhere (a Slurm
    job), so packages are not looked for on this machine."""
    from engine.config import fsdp_version
    from engine.methods import effective_quantization, get_method

    d = cfg.train.distributed
    if d.strategy not in ("fsdp", "deepspeed"):
        return
    spec = get_method(cfg.method.name)
    if not spec.can_shard:
        raise ConfigError(_PATH, f"{spec.title} saves its own tensors from the whole model and cannot be "
                          f"sharded by {d.strategy}; use ddp (a copy per GPU) or single", d.strategy)
    quant = effective_quantization(cfg)
    if d.strategy == "fsdp":
        if quant == "int8":
            raise ConfigError("model.quantization", "FSDP shards 4-bit bases (stored in the compute dtype), "
                              "not 8-bit ones; use nf4/qlora, or strategy ddp", quant)
        version = fsdp_version(d, bool(quant))
        if not on_gpu and version == 1:
            what = "a quantized base (QLoRA) uses FSDP1, which" if quant and d.fsdp.version == "auto" else \
                "FSDP1"
            raise ConfigError("train.distributed.fsdp.version" if d.fsdp.version != "auto" else _PATH,
                              f"{what} needs CUDA GPUs: on CPU ranks accelerate cannot place its flat "
                              "parameters. On the CPU use FSDP2 (version 2) with an unquantized base",
                              d.fsdp.version)
    if d.strategy == "deepspeed":
        if not on_gpu:
            raise ConfigError(_PATH, "DeepSpeed needs CUDA GPUs here: accelerate starts DeepSpeed only on "
                              "an accelerator (on CPU processes it falls back to plain data parallel). "
                              "On the CPU use fsdp or ddp", d.strategy)
        if not cluster and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(_PATH, "the deepspeed package is not installed (pip install deepspeed); "
                              "or use fsdp, which needs nothing more", d.strategy)
