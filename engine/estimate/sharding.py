"""Memory per GPU when a run is spread over processes: DDP, FSDP (full, hybrid, ZeRO-2-like,
CPU offload) and DeepSpeed ZeRO 2/3 (with and without offload).

Per rank, the single-GPU model (``engine.estimate.memory``) changes in three places; activations,
logits and the per-layer working set of autograd do not (each rank runs its own per-device
batch through whole layers):

* **resident state** — what each rank keeps between steps. With S processes sharing a shard
  group (all of them; one machine's for hybrid sharding):

  ==================  ======================  =================  ================================
  strategy            parameters              gradients          optimizer state
  ==================  ======================  =================  ================================
  DDP                 all                     all + a bucket     all
                                              copy (DDP's flat
                                              all-reduce buckets)
  FSDP full_shard     (frozen+trainable) / S  trainable / S      state / S
  FSDP shard_grad_op  the same at rest; the whole model is gathered from forward to backward
  FSDP cpu_offload    0 (in CPU memory)       0                  0
  ZeRO-2              all, compute dtype      trainable / S      (fp32 master + state) / S
  ZeRO-3              all / S                 trainable / S      (fp32 master + state) / S
  ZeRO offload        parameters (ZeRO-3) and/or optimizer state + fp32 master in CPU memory
  ==================  ======================  =================  ================================

  (PyTorch FSDP docs and ZeRO paper, Rajbhandari et al. 2020, §5: stage 2 partitions P_os+g,
  stage 3 P_os+g+p. DeepSpeed keeps an fp32 master copy of the trainable weights in the
  optimizer partition; FSDP's optimizer steps on the sharded fp32 parameters themselves.)
* **gathered units** — a sharded layer is all-gathered, in the compute dtype, for its forward
  and again for its backward: one decoder layer at a time plus the one prefetched, and the root
  unit (embeddings, final norm, head) for the whole step; one layer's unsharded gradients exist
  before their reduce-scatter.
* **communication** — NCCL's buffers and communicators, a fixed ``COMM_BUFFERS`` per GPU.

``resident`` (parameters, gradients, optimizer states) is what a rank really holds; the
two-process FSDP test compares it with the bytes each CPU rank holds (engine.distributed.measure),
activations excluded.

Pure arithmetic on the sizes ``engine.estimate.memory`` works out (:class:`Sizes`); memory
assembles the phases per rank (``breakdown(p, batch, seq, layout)``) and says which layouts fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.estimate.gpus import MiB

# NCCL's per-process buffers (channels × peers × NCCL_BUFFSIZE of 4 MiB) and communicator state;
# a few hundred MiB in practice. A usual figure until a multi-GPU measurement exists.
COMM_BUFFERS = 256 * MiB
CANDIDATE_COUNTS = (2, 4, 8)


@dataclass(frozen=True)
class Layout:
    """How the run is spread. ``kind``: single | ddp | fsdp | zero2 | zero3."""

    kind: str
    processes: int = 1
    shard_group: int = 1            # processes a parameter is split over
    reshard: bool = True            # FSDP: free a layer's gathered parameters after its forward
    cpu_offload: bool = False       # FSDP: parameters, gradients, optimizer state in CPU memory
    offload_optimizer: bool = False  # ZeRO
    offload_params: bool = False     # ZeRO-3

    @property
    def offloads(self) -> bool:
        """Parameters live in CPU memory (FSDP CPU offload, ZeRO-3 parameter offload)."""
        return self.cpu_offload or self.offload_params

    @property
    def label(self) -> str:
        if self.kind == "single":
            return "one GPU"
        name = {"ddp": "DDP", "fsdp": "FSDP", "zero2": "ZeRO-2", "zero3": "ZeRO-3"}[self.kind]
        extra = []
        if self.kind == "fsdp" and not self.reshard:
            extra.append("shard_grad_op")
        if self.kind == "fsdp" and self.shard_group < self.processes:
            extra.append(f"hybrid, sharded over {self.shard_group} per node")
        if self.offloads:
            extra.append("CPU offload")
        elif self.offload_optimizer:
            extra.append("optimizer offload")
        return name + (f" ({', '.join(extra)})" if extra else "")


def layout_of(d) -> Layout:
    """The Layout a ``train.distributed`` section asks for."""
    n = max(1, d.num_processes)
    if d.strategy == "single" or n == 1 and d.strategy == "ddp":
        return Layout("single")
    if d.strategy == "ddp":
        return Layout("ddp", n, 1)
    if d.strategy == "fsdp":
        s = d.fsdp.sharding_strategy
        if s == "no_shard":
            return Layout("ddp", n, 1)
        group = d.processes_per_machine if s.startswith("hybrid") else n
        return Layout("fsdp", n, group, reshard=s in ("full_shard", "hybrid_shard"), cpu_offload=d.fsdp.cpu_offload)
    ds = d.deepspeed
    kind = "zero3" if ds.zero_stage == 3 else "zero2"
    return Layout(kind, n, n, offload_optimizer=ds.offload_optimizer,
                  offload_params=ds.offload_params and kind == "zero3")


def candidates(n: int) -> list[Layout]:
    """What to try on ``n`` GPUs of one machine, least intrusive first: FSDP, then ZeRO-3, then
    CPU offload (slowest)."""
    return [Layout("fsdp", n, n), Layout("zero3", n, n), Layout("fsdp", n, n, cpu_offload=True)]


@dataclass(frozen=True)
class Sizes:
    """What the sharded arithmetic needs of a run, in bytes unless named otherwise."""

    frozen: int                 # frozen weights as stored (quantized where they are)
    trainable: int              # trainable parameters as stored (fp32 adapters)
    trainable_elements: int
    optimizer_inside: int       # optimizer state inside the allocator
    optimizer_outside: int      # paged 8-bit state (CUDA unified memory)
    optimizer_temp: int         # the update's temporaries
    dtype_bytes: int            # the compute dtype
    vocab: int
    hidden: int
    layers: int
    tied: bool


def resident(z: Sizes, lay: Layout) -> dict:
    """Bytes a rank keeps on its device between steps, and what it keeps in CPU memory instead:
    {"parameters", "gradients", "optimizer_states", "optimizer_outside", "cpu_offloaded"}."""
    s = max(1, lay.shard_group)
    if lay.kind == "single":
        return {"parameters": z.frozen + z.trainable, "gradients": z.trainable,
                "optimizer_states": z.optimizer_inside, "optimizer_outside": z.optimizer_outside,
                "cpu_offloaded": 0}
    if lay.kind == "ddp":
        return {"parameters": z.frozen + z.trainable, "gradients": 2 * z.trainable,
                "optimizer_states": z.optimizer_inside, "optimizer_outside": z.optimizer_outside,
                "cpu_offloaded": 0}
    if lay.kind == "fsdp":
        params, grads, opt = (z.frozen + z.trainable) // s, z.trainable // s, z.optimizer_inside // s
        if lay.cpu_offload:
            return {"parameters": 0, "gradients": 0, "optimizer_states": 0, "optimizer_outside": 0,
                    "cpu_offloaded": params + grads + opt + z.optimizer_outside // s}
        return {"parameters": params, "gradients": grads, "optimizer_states": opt,
                "optimizer_outside": z.optimizer_outside // s, "cpu_offloaded": 0}
    # DeepSpeed ZeRO: the module in the compute dtype, an fp32 master copy of the trainable
    # weights beside the optimizer state, both partitioned.
    model_bytes = z.frozen + z.trainable_elements * z.dtype_bytes
    grads = z.trainable_elements * z.dtype_bytes // s
    opt = (z.optimizer_inside + z.optimizer_outside + 4 * z.trainable_elements) // s
    params = model_bytes // s if lay.kind == "zero3" else model_bytes
    cpu = 0
    if lay.offload_optimizer:
        cpu += opt
        opt = 0
    if lay.offload_params:
        cpu += params
        params = 0
    return {"parameters": params, "gradients": grads, "optimizer_states": opt, "optimizer_outside": 0,
            "cpu_offloaded": cpu}


def units(z: Sizes) -> tuple[int, int, int]:
    """(one decoder layer's parameters in the compute dtype, the root unit's — embeddings, final
    norm and head —, trainable elements per layer)."""
    emb_bytes = z.vocab * z.hidden * (1 if z.tied else 2) * z.dtype_bytes
    layer_frozen = max(0, z.frozen - emb_bytes) // max(1, z.layers)
    per_layer_trainable = z.trainable_elements // max(1, z.layers)
    return layer_frozen + per_layer_trainable * z.dtype_bytes, emb_bytes + z.hidden * z.dtype_bytes, \
        per_layer_trainable


def working_set(z: Sizes, lay: Layout) -> tuple[int, int]:
    """Bytes of gathered (unsharded) parameters live in the forward and in the backward."""
    layer_unit, root_unit, per_layer_trainable = units(z)
    if lay.kind == "fsdp" and not lay.reshard:
        # shard_grad_op: every layer stays gathered from its forward until its backward.
        full = root_unit + z.layers * layer_unit
        fwd, bwd = full, full
    elif lay.kind in ("fsdp", "zero3"):
        fwd = root_unit + 2 * layer_unit                              # the running layer and the prefetched one
        bwd = root_unit + 2 * layer_unit + per_layer_trainable * 4    # + one layer's unsharded gradients
    else:
        return 0, 0
    if lay.cpu_offload:
        fwd += layer_unit // max(1, lay.shard_group)     # an offloaded shard copied in before its gather
    return fwd, bwd


def size_text(gpu_bytes: int) -> str:
    """A GPU's size as the estimate writes it ("24 GB")."""
    gb = gpu_bytes / (1 << 30)
    return f"{gb:.0f} GB" if abs(gb - round(gb)) < 0.05 else f"{gb:.1f} GB"
