"""Inside one rank of a multi-process run: who am I, the run file's strategy in force, and the
few things a sharded run does differently (where weights load, how the adapter is gathered).

Order inside ``engine.training.run`` (each step needs the one before):

1. :func:`apply_strategy` — the run file's ``train.distributed`` becomes accelerate's
   environment (``accelerate_env.strategy_env``), so the Accelerator the Trainer builds later
   shards the way the run file says, whichever way the ranks were launched;
2. :func:`init_process_group` — the process group exists before the weights load, so that each
   rank loads onto its own GPU and transformers' FSDP loading (rank 0 reads, the others start
   on the meta device) can apply;
3. the Trainer builds its Accelerator; :func:`enable_cpu_fsdp` lets FSDP run on CPU ranks;
4. after training, :func:`gathered_trainable_state_dict` on every rank, and rank 0 writes a
   standard peft adapter from it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from engine.config import DistributedConfig


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes, ``local_rank`` on its
    machine (torchrun's RANK / WORLD_SIZE / LOCAL_RANK)."""

    rank: int
    local_rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """Started by a launcher (torchrun / accelerate launch / srun), even with one process."""
        return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world() -> World:
    """This process's rank from the launcher's variables (a plain process is rank 0 of 1)."""

    def num(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    return World(rank=num("RANK", 0), local_rank=num("LOCAL_RANK", 0), size=num("WORLD_SIZE", 1))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def apply_strategy(d: DistributedConfig, *, quantized: bool, layer_classes: list[str],
                   on_gpu: bool | None = None) -> list[str]:
    """Set accelerate's variables for ``d`` in this process; returns warnings for the user.

    A launcher's variables that contradict the run file (``accelerate launch --config_file``
    with another strategy) are overridden: the run file is the single source. A world size
    other than ``num_processes`` is allowed (the launcher decides how many ranks start) but
    reported, since it changes the effective batch."""
    from engine.distributed.accelerate_env import strategy_env

    on_gpu = cuda_available() if on_gpu is None else on_gpu
    warnings = []
    w = world()
    if d.strategy == "single" and w.size > 1:
        warnings.append(f"train.distributed.strategy is single but the launcher started {w.size} processes: "
                        "they train data-parallel (DDP), each with a whole copy of the model.")
    elif d.strategy != "single" and w.launched and w.size != d.num_processes:
        warnings.append(f"train.distributed.num_processes is {d.num_processes} but the launcher started "
                        f"{w.size} processes; the effective batch is batch_size × grad_accum × {w.size}.")
    env = strategy_env(d, quantized=quantized, layer_classes=layer_classes, on_gpu=on_gpu)
    launcher_says = _launcher_strategy()
    if launcher_says and launcher_says != d.strategy and d.strategy in ("fsdp", "deepspeed", "ddp"):
        warnings.append(f"accelerate's config asked for {launcher_says}; the run file's "
                        f"train.distributed.strategy ({d.strategy}) is used.")
    if d.strategy in ("ddp", "single"):
        # Plain data parallel: no plugin may be active, whatever a stale config file set.
        env.update({"ACCELERATE_USE_FSDP": "false", "ACCELERATE_USE_DEEPSPEED": "false"})
    os.environ.update(env)
    return warnings


def _launcher_strategy() -> str | None:
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed"
    return None


def die_with_launcher() -> None:
    """End this rank if its launcher dies (Linux: PR_SET_PDEATHSIG).

    torchrun starts each rank in a session of its own, so killing the launcher's process group
    (the studio's Kill, a terminal's Ctrl+\\) would leave the ranks running, holding their GPUs.
    A graceful stop never relies on this: ``stop`` on stdin and SIGTERM/SIGINT reach every rank
    and they stop together at a step boundary."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)       # 1 = PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:                                 # the launcher died before we asked
        os._exit(1)


def init_process_group(d: DistributedConfig) -> None:
    """Start the process group now (accelerate's PartialState), before weights load, when the
    run has several ranks: every rank then loads onto its own GPU (``cuda:LOCAL_RANK``)
    instead of all onto GPU 0, and transformers' FSDP loading sees an initialised group."""
    if d.strategy == "single" or not world().launched:
        return
    from accelerate import PartialState

    PartialState(cpu=not cuda_available())


def places_weights(d: DistributedConfig) -> bool:
    """FSDP and DeepSpeed place (and shard) the weights themselves when the Trainer prepares the
    model, so the base loads on the CPU (or the meta device) rather than a whole copy on each
    GPU first, which would defeat sharding (engine.models.load_model ``sharded``)."""
    return d.strategy in ("fsdp", "deepspeed") and world().launched


def enable_cpu_fsdp(accelerator) -> bool:
    """Let FSDP run on CPU ranks (gloo). Returns True when it did.

    accelerate turns FSDP on only for accelerator devices (``AcceleratorState``: the FSDP
    branch lists MULTI_GPU/NPU/XPU/...), so CPU ranks silently fall back to DDP. PyTorch's FSDP2
    (``fully_shard``) itself runs on CPU tensors with gloo (measured here: the same losses and
    adapter as one process, tests/engine/test_fsdp.py), which is how the sharded path is tested
    without GPUs. We build the plugin accelerate would have built from the same environment and
    mark the state FSDP, in both the AcceleratorState and the PartialState it is re-read from."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true":
        return False
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        from engine.errors import ConfigError

        raise ConfigError("train.distributed.fsdp.version", "FSDP1 needs GPUs (on CPU ranks accelerate "
                          "cannot place its flat parameters); use version 2 or auto", "1")
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return True


def is_sharded(accelerator) -> bool:
    """The model is wrapped by FSDP or DeepSpeed (its parameters are split over ranks)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def gathered_trainable_state_dict(model, accelerator) -> dict:
    """The trainable tensors of a sharded ``model`` (the prepared FSDP/DeepSpeed wrapper), whole,
    on rank 0's CPU; an empty dict on other ranks. Collective: every rank must call it.

    Only trainable tensors are gathered (``ignore_frozen_params``): an adapter is megabytes,
    while gathering a 70B base onto one CPU would need 140 GB. FQNs are the unwrapped model's
    (``base_model.model....lora_A.default.weight``), the names peft's ``save_pretrained``
    expects in ``state_dict=``."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed gathers ZeRO-3 partitions itself (zero3_save_16bit_model); peft filters the keys.
        return accelerator.get_state_dict(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    sd = get_model_state_dict(model, options=options)
    return sd if accelerator.is_main_process else {}


def start_in_rank(cfg, warn) -> None:
    """The run file's train.distributed in force in this rank, before any weights load (the
    order is in this module's docstring). ``warn(message)`` reports to the user. Raises
    ConfigError when the strategy cannot run here or needs a launcher it did not get."""
    from engine.distributed.preflight import check_strategy
    from engine.errors import ConfigError

    d = cfg.train.distributed
    check_strategy(cfg, on_gpu=cuda_available())
    if d.strategy != "single" and not world().launched:
        raise ConfigError("train.distributed.strategy", f"{d.strategy} runs as several processes: start it "
                          "with `peft-studio launch run.yaml` (or `accelerate launch -m engine train "
                          "run.yaml`), or set strategy: single", d.strategy)
    if not world().launched:
        return
    die_with_launcher()
    layers: list[str] = []
    if d.strategy == "fsdp":
        from engine.distributed.layers import decoder_layer_classes_for

        layers = decoder_layer_classes_for(cfg.model)
    from engine.methods import effective_quantization

    for msg in apply_strategy(d, quantized=bool(effective_quantization(cfg)), layer_classes=layers):
        warn(msg)
    init_process_group(d)
