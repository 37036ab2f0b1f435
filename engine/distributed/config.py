"""`train.distributed`: where and how a run is spread over processes, GPUs and machines.

The run file is the single source: ``peft-studio launch`` writes accelerate's config file from
these fields, and a run started with plain ``accelerate launch -m engine train run.yaml`` reads
them too (``engine.distributed.runtime`` turns them into accelerate's environment before the
Trainer builds its Accelerator), so both paths shard the same way.

```yaml
train:
  distributed:
    strategy: fsdp          # single | ddp | fsdp | deepspeed
    num_processes: 2        # in all, over every machine (one per GPU)
    fsdp: {sharding_strategy: full_shard, cpu_offload: false, state_dict_type: sharded}
```

Each strategy has its own typed section (``fsdp``, ``deepspeed``); a section is read only when
its strategy is chosen. Terms are accelerate's and PyTorch's (``FULL_SHARD``, ZeRO stages).
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import ConfigError
from engine.fields import F

STRATEGIES = ["single", "ddp", "fsdp", "deepspeed"]
SHARDING_STRATEGIES = ["full_shard", "shard_grad_op", "hybrid_shard", "hybrid_shard_zero2", "no_shard"]
STATE_DICT_TYPES = ["sharded", "full"]
FSDP_VERSIONS = ["auto", "1", "2"]
ZERO_STAGES = [2, 3]
SHARDED = ("fsdp", "deepspeed")     # strategies that split parameters/gradients/optimizer state


@dataclass
class FsdpConfig:
    """PyTorch Fully Sharded Data Parallel, through accelerate's FSDP plugin."""

    sharding_strategy: str = F("full_shard", "What each GPU keeps. `full_shard`: a 1/N slice of the "
                               "parameters, gradients and optimizer state (ZeRO-3); `shard_grad_op`: "
                               "gradients and optimizer state only, parameters stay whole after the "
                               "forward (ZeRO-2); `hybrid_shard`: full_shard inside each machine, "
                               "replicated across machines (less traffic between nodes); "
                               "`hybrid_shard_zero2`: the same with shard_grad_op inside each machine; "
                               "`no_shard`: plain data parallel.", choices=SHARDING_STRATEGIES)
    cpu_offload: bool = F(False, "Keep the sharded parameters (and their gradients and optimizer "
                          "state) in CPU memory, moving each layer to the GPU only while it runs: the "
                          "least GPU memory, much slower steps.")
    auto_wrap: str = F("auto", "Decoder-layer class names to shard one by one, comma-separated. "
                       "`auto`: the model's own (`_no_split_modules`, e.g. LlamaDecoderLayer), plus "
                       "each trainable adapter layer (peft's FSDP wrap policy).", advanced=True)
    state_dict_type: str = F("sharded", "How checkpoints store the model for resuming: `sharded` "
                             "(each rank writes its slice; fast, no gathering) or `full` (gathered "
                             "on rank 0). Either way rank 0 also writes a standard peft adapter.",
                             choices=STATE_DICT_TYPES, advanced=True)
    version: str = F("auto", "FSDP implementation. `2`: per-parameter sharding (fully_shard), "
                     "transformers' default; `1`: flat parameters, the path bitsandbytes documents "
                     "for QLoRA (4-bit weights stored in the compute dtype). `auto`: 1 for a "
                     "quantized base, else 2.", choices=FSDP_VERSIONS, advanced=True)
    cpu_ram_efficient_loading: bool = F(True, "On GPUs: only rank 0 reads the weights into CPU memory; "
                                        "the others start empty and receive their shards (a 70B model "
                                        "is read once, not once per GPU).", advanced=True)


@dataclass
class DeepSpeedConfig:
    """DeepSpeed ZeRO, through accelerate's DeepSpeed plugin (needs the `deepspeed` package)."""

    zero_stage: int = F(2, "ZeRO stage. 2: optimizer state and gradients are partitioned over the "
                        "GPUs, parameters are replicated; 3: parameters are partitioned too.",
                        choices=ZERO_STAGES)
    offload_optimizer: bool = F(False, "Keep the partitioned optimizer state (and its update step) "
                                "in CPU memory (ZeRO-Offload).")
    offload_params: bool = F(False, "ZeRO-3 only: keep the partitioned parameters in CPU memory "
                             "between uses (ZeRO-Infinity's CPU offload).")


@dataclass
class DistributedConfig:
    """Where a run trains: one process, or several with a strategy (DDP, FSDP, DeepSpeed ZeRO)."""

    strategy: str = F("single", "`single`: one process (one GPU, or the CPU). `ddp`: one process per "
                      "GPU, each with a whole copy of the model (data parallel). `fsdp`: the model, "
                      "gradients and optimizer state are sharded over the GPUs (PyTorch FSDP), for "
                      "models one GPU cannot hold. `deepspeed`: DeepSpeed ZeRO stage 2/3.",
                      choices=STRATEGIES)
    num_processes: int = F(1, "Processes in all, over every machine: one per GPU. The effective batch "
                           "is batch_size × grad_accum × num_processes.", minimum=1)
    num_machines: int = F(1, "Machines (nodes) taking part; num_processes is split evenly over them.",
                          minimum=1)
    gpu_ids: str = F("all", "This machine's GPUs to use (CUDA_VISIBLE_DEVICES), e.g. `0,1`; `all`: "
                     "every one.", advanced=True)
    main_process_port: int = F(29500, "TCP port of the rendezvous on the first machine.", minimum=1,
                               maximum=65535, advanced=True)
    fsdp: FsdpConfig = field(default_factory=FsdpConfig, metadata={"help": "FSDP options "
                                                                  "(strategy: fsdp).", "advanced": False})
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig,
                                       metadata={"help": "DeepSpeed options (strategy: deepspeed).",
                                                 "advanced": False})

    @property
    def is_multi_process(self) -> bool:
        return self.strategy != "single"

    @property
    def shards(self) -> bool:
        """Parameters, gradients or optimizer state are split over processes (FSDP or ZeRO)."""
        return self.strategy in SHARDED and self.num_processes > 1 and not (
            self.strategy == "fsdp" and self.fsdp.sharding_strategy == "no_shard")

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.num_processes // max(1, self.num_machines))


def validate_distributed(d: DistributedConfig, path: str = "train.distributed") -> None:
    """Cross-field checks (each field's own choices and bounds are checked by RunConfig.validate).
    Raises ConfigError naming the field."""
    if d.strategy == "single":
        if d.num_processes != 1:
            raise ConfigError(f"{path}.num_processes", "must be 1 with strategy single; choose ddp, fsdp or "
                              "deepspeed to use several processes", d.num_processes)
        if d.num_machines != 1:
            raise ConfigError(f"{path}.num_machines", "must be 1 with strategy single", d.num_machines)
    if d.num_processes % d.num_machines:
        raise ConfigError(f"{path}.num_processes", f"must be a multiple of num_machines ({d.num_machines}): "
                          "every machine runs the same number of processes", d.num_processes)
    if d.strategy == "fsdp" and d.fsdp.sharding_strategy.startswith("hybrid") and d.num_machines < 2:
        raise ConfigError(f"{path}.fsdp.sharding_strategy", "hybrid sharding replicates across machines "
                          "and needs num_machines ≥ 2; use full_shard on one machine",
                          d.fsdp.sharding_strategy)
    if d.strategy == "deepspeed" and d.deepspeed.offload_params and d.deepspeed.zero_stage != 3:
        raise ConfigError(f"{path}.deepspeed.offload_params", "parameter offload needs zero_stage 3",
                          d.deepspeed.offload_params)
    gpu_ids = d.gpu_ids.strip()
    if gpu_ids != "all" and not all(p.strip().isdigit() for p in gpu_ids.split(",")):
        raise ConfigError(f"{path}.gpu_ids", "must be `all` or GPU numbers separated by commas, e.g. 0,1",
                          d.gpu_ids)


def fsdp_version(d: DistributedConfig, quantized: bool) -> int:
    """The FSDP implementation a run uses: the configured one, or for `auto` FSDP1 on a quantized
    base (bitsandbytes' documented FSDP-QLoRA path; FSDP2's all-gather loses the packed 4-bit
    weights' quantization state, bitsandbytes issue #1945) and FSDP2 otherwise."""
    if d.fsdp.version != "auto":
        return int(d.fsdp.version)
    return 1 if quantized else 2
