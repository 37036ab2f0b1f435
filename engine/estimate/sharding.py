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
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.estimate.gpus import GiB, MiB

# NCCL's per-process buffers (channels × peers × NCCL_BUFFSIZE of 4 MiB) and communicator state;
# a few hundred MiB in practice. A usual figure until a multi-GPU measurement exists.
COMM_BUFFERS = 256 * MiB


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
    def label(self) -> str:
        if self.kind == "single":
            return "one GPU"
        name = {"ddp": "DDP", "fsdp": "FSDP", "zero2": "ZeRO-2", "zero3": "ZeRO-3"}[self.kind]
        extra = []
        if self.kind == "fsdp" and not self.reshard:
            extra.append("shard_grad_op")
        if self.kind == "fsdp" and self.shard_group < self.processes:
            extra.append(f"hybrid, sharded over {self.shard_group} per node")
        if self.cpu_offload or self.offload_params:
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


def _units(p) -> tuple[int, int, int]:
    """(one decoder layer's parameters in the compute dtype, the root unit's — embeddings, final
    norm and head —, trainable elements per layer)."""
    from engine.estimate.memory import frozen_weight_bytes

    a, info = p.arch, p.params
    cb = p.dtype_bytes
    emb_el = a.vocab * a.hidden * (1 if info.tied else 2)
    emb_bytes = emb_el * cb
    frozen = frozen_weight_bytes(p)
    layer_frozen = max(0, frozen - emb_bytes) // max(1, a.layers)
    trainable_el = sum(n for n, _, _ in info.trainable)
    per_layer_trainable = trainable_el // max(1, a.layers)
    return layer_frozen + per_layer_trainable * cb, emb_bytes + a.hidden * cb, per_layer_trainable


def resident(p, lay: Layout) -> dict:
    """Bytes a rank keeps on its device between steps, and what it keeps in CPU memory instead:
    {"parameters", "gradients", "optimizer_states", "optimizer_outside", "cpu_offloaded"}."""
    from engine.estimate.memory import frozen_weight_bytes, optimizer_bytes

    info = p.params
    frozen = frozen_weight_bytes(p)
    trainable_el = sum(n for n, _, _ in info.trainable)
    trainable = sum(n * e for n, e, _ in info.trainable)
    opt_in, opt_out, _temp = optimizer_bytes(p)
    cb = p.dtype_bytes
    s = max(1, lay.shard_group)
    if lay.kind == "single":
        return {"parameters": frozen + trainable, "gradients": trainable, "optimizer_states": opt_in,
                "optimizer_outside": opt_out, "cpu_offloaded": 0}
    if lay.kind == "ddp":
        return {"parameters": frozen + trainable, "gradients": 2 * trainable, "optimizer_states": opt_in,
                "optimizer_outside": opt_out, "cpu_offloaded": 0}
    if lay.kind == "fsdp":
        params, grads, opt = (frozen + trainable) // s, trainable // s, opt_in // s
        if lay.cpu_offload:
            return {"parameters": 0, "gradients": 0, "optimizer_states": 0, "optimizer_outside": 0,
                    "cpu_offloaded": params + grads + opt + opt_out // s}
        return {"parameters": params, "gradients": grads, "optimizer_states": opt,
                "optimizer_outside": opt_out // s, "cpu_offloaded": 0}
    # DeepSpeed ZeRO: the module in the compute dtype, an fp32 master copy of the trainable
    # weights beside the optimizer state, both partitioned.
    model_bytes = frozen + trainable_el * cb
    grads = trainable_el * cb // s
    opt = (opt_in + opt_out + 4 * trainable_el) // s
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


def breakdown(p, lay: Layout, batch: int, seq: int) -> dict:
    """Per-rank figures for one (batch, seq) under ``lay``, in the shape of
    ``engine.estimate.memory.breakdown``'s result, plus ``resident`` and ``cpu_offloaded``."""
    from engine.estimate import memory as m
    from engine.estimate.activations import Shape

    if lay.kind == "single":
        out = m.breakdown(p, batch, seq)
        out["resident"] = resident(p, lay)
        out["cpu_offloaded"] = 0
        return out
    a, cfg = p.arch, p.cfg
    shape = Shape(a.hidden, a.intermediate, a.heads, a.kv_heads, a.head_dim, a.vocab, a.layers)
    pred = p.act.predict(shape, batch, seq, p.virtual)
    res = resident(p, lay)
    _in, _out, opt_temp = m.optimizer_bytes(p)
    T = pred["positions"]
    logit_rows = batch * T if not p.act.packed else T
    logits = m.logits_bytes(p, logit_rows, pred)
    tr = m.transients(p, batch, seq)
    gc = bool(cfg.train.gradient_checkpointing)
    acts = (pred["checkpointed"] + pred["outside"]) if gc else (pred["layers"] + pred["outside"])
    layer_unit, root_unit, per_layer_trainable = _units(p)
    sharded = lay.kind in ("fsdp", "zero3")
    if lay.kind == "fsdp" and not lay.reshard:
        # shard_grad_op: every layer stays gathered from its forward until its backward.
        work_fwd = root_unit + a.layers * layer_unit
        work_bwd = work_fwd
    elif sharded:
        work_fwd = root_unit + 2 * layer_unit            # the running layer and the prefetched one
        work_bwd = root_unit + 2 * layer_unit + per_layer_trainable * 4   # + one layer's full grads
    else:
        work_fwd = work_bwd = 0
    if lay.kind == "fsdp" and lay.cpu_offload:
        # Offloaded shards are copied to the GPU one unit at a time (the gathers above).
        work_fwd += layer_unit // max(1, lay.shard_group)
    grads = res["gradients"]
    accum = grads if cfg.train.grad_accum > 1 else 0
    static = res["parameters"] + res["optimizer_states"]
    s = max(1, lay.shard_group if lay.kind != "ddp" else 1)
    step_temp = 0 if (lay.cpu_offload or lay.offload_optimizer) else opt_temp // s
    phases = {
        "loss": static + accum + acts + max(logits, tr["forward"]) + work_fwd,
        "backward": static + grads + acts + tr["backward"] + (pred["per_layer"] if gc else 0) + work_bwd,
        "step": static + grads + step_temp,
    }
    eval_logits = m.eval_logits_bytes(p, logit_rows)
    if eval_logits:
        phases["eval"] = static + eval_logits + work_fwd
    peak_phase = max(phases, key=phases.get)
    comp = dict.fromkeys(m.COMPONENTS, 0)
    comp.update(frozen_weights=res["parameters"], optimizer_states=res["optimizer_states"])
    if peak_phase == "loss":
        comp.update(gradients=accum, activations=acts, transient=work_fwd)
        comp["logits_loss" if logits >= tr["forward"] else "transient"] += max(logits, tr["forward"])
    elif peak_phase == "backward":
        comp.update(gradients=grads, activations=acts + (pred["per_layer"] if gc else 0),
                    transient=tr["backward"] + work_bwd)
    elif peak_phase == "eval":
        comp.update(logits_loss=eval_logits, transient=work_fwd)
    else:
        comp.update(gradients=grads, transient=step_temp)
    allocated = phases[peak_phase]
    dynamic = allocated - static
    if p.cpu:
        overhead = int(m.FRAG_CPU * dynamic)
        comp["runtime"] = m.RUNTIME_CPU
    else:
        overhead = int(m.FRAG_DYNAMIC * dynamic + m.FRAG_STATIC * static + m.FRAG_FIXED)
        uses_bnb = bool(p.quant) or cfg.train.optimizer in ("adamw_8bit", "paged_adamw_8bit")
        comm = COMM_BUFFERS if lay.processes > 1 else 0
        comp["cuda_context"] = m.CUDA_CONTEXT + (m.BNB_CONTEXT if uses_bnb else 0) + comm
    comp["allocator_overhead"] = overhead
    comp["outside_allocator"] = res["optimizer_outside"]
    comp = {k: int(v) for k, v in comp.items()}
    reserved = int(allocated) + overhead
    return {"components": comp, "peak_allocated": int(allocated), "peak_reserved": reserved,
            "device_total": reserved + comp["cuda_context"] + comp["runtime"] + res["optimizer_outside"],
            "phases": {k: int(v) for k, v in phases.items()}, "peak_phase": peak_phase,
            "sizes": {"frozen_weights": res["parameters"], "gradients": grads,
                      "optimizer_states": res["optimizer_states"], "activations": int(acts),
                      "logits_loss": int(logits), "transient": int(max(work_fwd, work_bwd))},
            "positions": T, "resident": res, "cpu_offloaded": res["cpu_offloaded"]}


# ---- which layouts fit ------------------------------------------------------------------------

CANDIDATE_COUNTS = (2, 4, 8)


def candidates(n: int) -> list[Layout]:
    """What to try on ``n`` GPUs of one machine, least intrusive first: FSDP, then ZeRO-3, then
    CPU offload (slowest)."""
    return [Layout("fsdp", n, n), Layout("zero3", n, n), Layout("fsdp", n, n, cpu_offload=True)]


def fitting(p, gpu, batch: int, seq: int, counts=CANDIDATE_COUNTS) -> list[dict]:
    """For a configuration one GPU cannot hold: the fewest GPUs (of ``counts``) on which a
    layout without offload fits, and before that the fewest on which CPU offload fits, each as
    {"layout", "label", "gpus", "per_gpu", "text"}. Empty when nothing up to the largest
    count fits."""
    out: list[dict] = []
    for n in counts:
        for lay in candidates(n):
            offload = lay.cpu_offload or lay.offload_params
            if offload and any(o["layout"].cpu_offload or o["layout"].offload_params for o in out):
                continue    # offload already fits on fewer GPUs
            total = breakdown(p, lay, batch, seq)["device_total"]
            if total <= gpu.total_bytes:
                out.append({"layout": lay, "label": lay.label, "gpus": n, "per_gpu": total,
                            "text": f"{lay.label} over {n} × {_size(gpu)}: {total / GiB:.1f} GB each"})
                if not offload:
                    return out
                break
    return out


def _size(gpu) -> str:
    gb = gpu.total_bytes / GiB
    return f"{gb:.0f} GB" if abs(gb - round(gb)) < 0.05 else f"{gb:.1f} GB"
