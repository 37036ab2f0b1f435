"""`train.distributed` in accelerate's own terms: its config file, and the environment it sets.

accelerate reads a strategy two ways: ``accelerate launch --config_file`` turns the file into
``ACCELERATE_USE_FSDP``/``FSDP_*``/``ACCELERATE_DEEPSPEED_*`` variables for every rank, and the
plugins (``FullyShardedDataParallelPlugin``, ``DeepSpeedPlugin``) read those variables when the
Trainer builds its Accelerator. We produce both from the run file, with one mapping:

* :func:`accelerate_config` — the YAML that ``peft-studio launch`` writes and hands to
  ``accelerate launch`` (so the launcher starts the right number of ranks on each machine);
* :func:`strategy_env` — the variables the engine sets in each rank before the Trainer starts
  (``engine.distributed.runtime``), so that plain ``accelerate launch -m engine train run.yaml``
  (with no config file, or a stale one) still trains the way the run file says.

Names and values are accelerate 1.x's (``accelerate/commands/config/config_args.py``,
``accelerate/utils/launch.py``: ``prepare_multi_gpu_env``, ``prepare_deepspeed_cmd_env``).
Pure functions: nothing here imports torch or accelerate.
"""

from __future__ import annotations

from engine.config import DistributedConfig, fsdp_version

# accelerate's FSDP1 sharding-strategy names (torch.distributed.fsdp.ShardingStrategy).
_FSDP1_SHARDING = {"full_shard": "FULL_SHARD", "shard_grad_op": "SHARD_GRAD_OP", "no_shard": "NO_SHARD",
                   "hybrid_shard": "HYBRID_SHARD", "hybrid_shard_zero2": "HYBRID_SHARD_ZERO2"}
_STATE_DICT = {"sharded": "SHARDED_STATE_DICT", "full": "FULL_STATE_DICT"}


def mixed_precision(dtype_name: str, on_gpu: bool) -> str:
    """accelerate's ``mixed_precision`` for weights of ``dtype_name`` ('bfloat16', 'float16',
    'float32'): the Trainer autocasts to the weights' half-precision dtype on GPUs, never on
    the CPU (engine.training.arguments' bf16/fp16)."""
    if not on_gpu:
        return "no"
    return {"bfloat16": "bf16", "float16": "fp16"}.get(dtype_name, "no")


def _wrap_classes(d: DistributedConfig, layer_classes: list[str]) -> str:
    if d.fsdp.auto_wrap.strip() and d.fsdp.auto_wrap.strip() != "auto":
        return ",".join(c.strip() for c in d.fsdp.auto_wrap.split(",") if c.strip())
    return ",".join(layer_classes)


def fsdp_settings(d: DistributedConfig, *, quantized: bool, layer_classes: list[str], on_gpu: bool) -> dict:
    """The FSDP plugin's settings as accelerate's config file names them (``fsdp_config:``).

    ``layer_classes``: the model's decoder-layer classes (``model._no_split_modules``), each
    wrapped as one FSDP unit. ``on_gpu=False`` (CPU ranks, the CI test) turns off the two options
    that need an accelerator: rank-0-only loading and ``sync_module_states`` (which broadcasts
    from a CUDA device)."""
    version = fsdp_version(d, quantized)
    f = d.fsdp
    ram_efficient = bool(f.cpu_ram_efficient_loading and on_gpu)
    out = {
        "fsdp_version": version,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_transformer_layer_cls_to_wrap": _wrap_classes(d, layer_classes),
        "fsdp_offload_params": bool(f.cpu_offload),
        "fsdp_state_dict_type": _STATE_DICT[f.state_dict_type],
        "fsdp_cpu_ram_efficient_loading": ram_efficient,
        # accelerate's launcher requires it with RAM-efficient loading (rank 0's weights are
        # broadcast); FSDP2 ignores it.
        "fsdp_sync_module_states": ram_efficient,
        "fsdp_activation_checkpointing": False,   # train.gradient_checkpointing does it (transformers')
    }
    if version == 1:
        out.update({
            "fsdp_sharding_strategy": _FSDP1_SHARDING[f.sharding_strategy],
            "fsdp_reshard_after_forward": _FSDP1_SHARDING[f.sharding_strategy],
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_forward_prefetch": False,
            # Flat parameters that mix frozen and trainable tensors cannot keep their original
            # identity; peft's wrap policy gives each LoRA layer its own unit instead
            # (peft docs, "FSDP"; bitsandbytes' FSDP-QLoRA guide).
            "fsdp_use_orig_params": False,
            "fsdp_sync_module_states": ram_efficient or on_gpu,
        })
    else:
        # FSDP2 names the ZeRO-3/ZeRO-2 choice by whether a layer re-shards after its forward.
        out["fsdp_reshard_after_forward"] = f.sharding_strategy in ("full_shard", "hybrid_shard")
    return out


def hybrid_mesh(d: DistributedConfig) -> dict | None:
    """FSDP2's hybrid sharding is a 2-D device mesh: replicate over machines, shard inside each
    (accelerate's ParallelismConfig ``dp_replicate_size`` × ``dp_shard_size``)."""
    if d.strategy != "fsdp" or not d.fsdp.sharding_strategy.startswith("hybrid"):
        return None
    return {"parallelism_config_dp_replicate_size": d.num_machines,
            "parallelism_config_dp_shard_size": d.processes_per_machine}


def deepspeed_settings(d: DistributedConfig, *, quantized: bool) -> dict:
    """The DeepSpeed plugin's settings (``deepspeed_config:`` in accelerate's file)."""
    ds = d.deepspeed
    out = {
        "zero_stage": ds.zero_stage,
        "offload_optimizer_device": "cpu" if ds.offload_optimizer else "none",
        "offload_param_device": "cpu" if (ds.offload_params and ds.zero_stage == 3) else "none",
        # A quantized base cannot be created under zero.Init (transformers, "DeepSpeed ZeRO3 + QLoRA").
        "zero3_init_flag": ds.zero_stage == 3 and not quantized,
        # Gather the 16-bit weights on save, so that rank 0 writes a whole adapter.
        "zero3_save_16bit_model": ds.zero_stage == 3,
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    return out


def accelerate_config(d: DistributedConfig, *, dtype_name: str, quantized: bool, layer_classes: list[str],
                      on_gpu: bool, machine_rank: int = 0, main_process_ip: str | None = None) -> dict:
    """accelerate's config file (``accelerate launch --config_file``) for ``d``, as a dict.

    On a machine without GPUs, multi-process strategies are written as ``MULTI_GPU`` with
    ``use_cpu: false``: accelerate's launcher then starts one rank per process through
    torchrun (its ``--cpu`` mode starts a single process), and each rank, finding no CUDA,
    trains on the CPU with gloo; the strategy itself comes from the run file
    (:func:`strategy_env`)."""
    kind = {"single": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[d.strategy]
    if not on_gpu and kind in ("FSDP", "DEEPSPEED"):
        kind = "MULTI_GPU"
    cfg = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": kind,
        "downcast_bf16": "no",
        "gpu_ids": d.gpu_ids if on_gpu else "all",
        "machine_rank": machine_rank,
        "main_training_function": "main",
        "mixed_precision": mixed_precision(dtype_name, on_gpu),
        "num_machines": d.num_machines,
        "num_processes": d.num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "use_cpu": not on_gpu and d.strategy == "single",
        "dynamo_config": {"dynamo_backend": "NO"},
    }
    if d.num_machines > 1:
        cfg["main_process_ip"] = main_process_ip or "127.0.0.1"
        cfg["main_process_port"] = d.main_process_port
    elif d.strategy != "single":
        cfg["main_process_port"] = d.main_process_port
    if kind == "FSDP":
        cfg["fsdp_config"] = fsdp_settings(d, quantized=quantized, layer_classes=layer_classes, on_gpu=on_gpu)
        mesh = hybrid_mesh(d)
        if mesh and cfg["fsdp_config"]["fsdp_version"] == 2:
            cfg["parallelism_config"] = mesh
    if kind == "DEEPSPEED":
        cfg["deepspeed_config"] = deepspeed_settings(d, quantized=quantized)
    return cfg


def strategy_env(d: DistributedConfig, *, quantized: bool, layer_classes: list[str], on_gpu: bool) -> dict:
    """The variables accelerate's plugins read, for ``d`` (empty for single and DDP, which need
    none beyond the launcher's). Mirrors ``accelerate/utils/launch.py``'s
    ``prepare_multi_gpu_env``/``prepare_deepspeed_cmd_env`` for the same settings."""
    env: dict[str, str] = {}
    if d.strategy == "fsdp":
        s = fsdp_settings(d, quantized=quantized, layer_classes=layer_classes, on_gpu=on_gpu)
        env["ACCELERATE_USE_FSDP"] = "true"
        env["ACCELERATE_USE_DEEPSPEED"] = "false"
        for key, value in s.items():
            name = "FSDP_TRANSFORMER_CLS_TO_WRAP" if key == "fsdp_transformer_layer_cls_to_wrap" else key.upper()
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
        env.setdefault("FSDP_SYNC_MODULE_STATES", "false")
        env.setdefault("FSDP_USE_ORIG_PARAMS", "false")
        mesh = hybrid_mesh(d)
        if mesh and s["fsdp_version"] == 2:
            env["ACCELERATE_USE_PARALLELISM_CONFIG"] = "true"
            env["PARALLELISM_CONFIG_DP_REPLICATE_SIZE"] = str(mesh["parallelism_config_dp_replicate_size"])
            env["PARALLELISM_CONFIG_DP_SHARD_SIZE"] = str(mesh["parallelism_config_dp_shard_size"])
    elif d.strategy == "deepspeed":
        s = deepspeed_settings(d, quantized=quantized)
        env["ACCELERATE_USE_DEEPSPEED"] = "true"
        env["ACCELERATE_USE_FSDP"] = "false"
        env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] = str(s["zero_stage"])
        env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] = s["offload_optimizer_device"]
        env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] = s["offload_param_device"]
        env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] = str(s["zero3_init_flag"]).lower()
        env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] = str(s["zero3_save_16bit_model"]).lower()
    return env
