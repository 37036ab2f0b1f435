"""Peak GPU memory of a training run, by component, from a RunConfig and config.json alone.

The step is modelled as phases and the peak is the largest:

* **loss** — end of the forward pass, as the loss's backward starts: weights, optimizer state
  (it exists from the second step on), every saved activation, and the loss's working set.
  The model's own cross-entropy upcasts the logits to fp32 and keeps its fp32 log-softmax
  output; its backward then holds the saved output, its incoming gradient and the gradient it
  produces, all batch × seq × vocab in fp32 (~12 bytes per logit), which is why long sequences
  with a big vocabulary hit a wall there. engine/training/loss.py's chunked (or Liger) loss avoids that
  for plain-head architectures: one chunk of logits at a time plus a rows × hidden gradient.
* **backward** — walking back through the layers. With gradient checkpointing the layers keep
  only their input, and one layer at a time is recomputed in full; QLoRA dequantizes one weight
  at a time to multiply with it.
* **step** — the optimizer update: weights, gradients, states and the update's temporaries
  (torch's foreach AdamW materialises one state-sized temporary).
* **preference tasks** (train.task dpo, orpo, kto, simpo: engine/tasks.py) — TRL puts the
  chosen and the rejected sequence of every pair through the model in one batch, so activations,
  logits and transients are those of ``batch_size × sequences_per_example`` sequences. DPO and
  KTO then run the reference forward — the same model with the adapter disabled, under no_grad,
  after the policy's forward (trl DPOTrainer._compute_loss) — while the policy's activations are
  still alive: ``reference_forward`` adds its working set, about one layer's activations of those
  sequences (no_grad frees each layer's intermediates as the next one runs). No second copy of
  the weights: the reference is the base itself. ``train.preference.precompute_ref_log_probs``
  moves it before training (0 here).
* **eval** — when the run evaluates: weights and optimizer state, and the model's own loss over
  a batch's full logits (no gradients, no saved activations). With the chunked training loss
  this can be the peak for a large vocabulary.

``components`` is the breakdown of the peak phase (a component that is not alive then is 0,
with its size in ``sizes``). Reserved memory adds the caching allocator's fragmentation; the
device total adds the CUDA context and what lives outside PyTorch's allocator (paged 8-bit
optimizer state, which bitsandbytes keeps in CUDA unified memory).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

from engine.errors import ConfigError
from engine.estimate import sharding
from engine.estimate.activations import Shape, fit_activation_model
from engine.estimate.counts import count_params_for
from engine.estimate.gpus import GiB, Gpu, MiB, detect_gpu, parse_gpu, this_cpu
from engine.methods import effective_quantization, get_method
from engine.models import resolve_dtype
from engine.models.arch import load_arch
from engine.models.quant import quantized_weight_bytes
from engine.tasks import get_task
from engine.training.from_adapter import adopted
from engine.training.loss import PLAIN_HEAD_MODEL_TYPES, auto_chunk_tokens, resolve_loss_impl

# Calibration constants. Until a GPU run of benchmarks/vram_accuracy.py exists they are the
# usual figures: ~10% fragmentation on memory that churns every step (activations, logits,
# temporaries), ~1% on memory allocated once, and a CUDA context of about half a GiB (driver,
# kernels, cuBLAS handles; lazy module loading keeps it there on CUDA 12).
FRAG_DYNAMIC = 0.10
FRAG_STATIC = 0.01
FRAG_FIXED = 64 * MiB
CUDA_CONTEXT = 512 * MiB
# On the CPU the figure is the process's peak RSS. Beside the modelled tensors it holds the runtime:
# Python, PyTorch, transformers, peft, accelerate, the tokenizer and the prepared data (533 MiB
# measured before the model loads, torch 2.13, the demo's tokenizer, 400 examples) and about
# 0.9 GiB more that the tensor model does not account for. RUNTIME_CPU is fitted to the peak RSS
# of five demo runs (benchmarks/time_accuracy.py; docs/estimator-accuracy.md, "RAM on the CPU").
# glibc keeps freed blocks mapped much as the CUDA caching allocator does: the same 10%.
RUNTIME_CPU = int(1.4 * GiB)
FRAG_CPU = FRAG_DYNAMIC
BNB_CONTEXT = 64 * MiB            # bitsandbytes' kernels and code books, when it is used
TIGHT = 0.90                      # above 90% of the device: "tight"

COMPONENTS = ("frozen_weights", "trainable_params", "gradients", "optimizer_states", "activations",
              "logits_loss", "reference_forward", "transient", "allocator_overhead", "cuda_context", "runtime", "outside_allocator")
LABELS = {
    "frozen_weights": "Frozen weights",
    "trainable_params": "Trainable parameters",
    "gradients": "Gradients",
    "optimizer_states": "Optimizer states",
    "activations": "Activations",
    "logits_loss": "Logits and loss",
    "reference_forward": "Reference forward (adapter disabled)",
    "transient": "Transient buffers",
    "allocator_overhead": "Allocator overhead",
    "cuda_context": "CUDA context",
    "runtime": "Runtime (Python, PyTorch, data)",
    "outside_allocator": "Outside the allocator",
}


@dataclass
class Estimate:
    components: dict
    peak_allocated: int
    peak_reserved: int
    device_total: int
    total_params: int
    trainable_params: int
    adapter_bytes: int
    verdict: str                      # "fits" | "tight" | "exceeds" | "unknown" (no GPU given or found)
    gpu_name: str | None = None
    gpu_bytes: int | None = None
    max_batch_size: int | None = None
    max_seq_len: int | None = None
    suggestions: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)      # each component's size whether live at the peak or not
    phases: dict = field(default_factory=dict)     # allocated bytes at each phase
    peak_phase: str = ""
    dtype: str = ""
    quantization: str | None = None
    batch_size: int = 0
    seq_len: int = 0
    tokens_per_step: int = 0
    generic: bool = False
    on_cpu: bool = False              # judged against this machine's RAM: no GPU, the run trains on the CPU
    assumptions: dict = field(default_factory=dict)   # attention, loss, packing, dtype of each component
    # Spread over processes (train.distributed): the figures above are then per GPU (per rank).
    layout: str = "one GPU"           # e.g. "FSDP", "ZeRO-3 (CPU offload)"
    processes: int = 1
    resident: dict = field(default_factory=dict)   # per rank: parameters, gradients, optimizer_states (bytes)
    cpu_offloaded: int = 0            # bytes per rank kept in CPU memory instead (offload)
    sharding_options: list = field(default_factory=list)   # layouts over several GPUs that would fit

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Plan:
    """Everything that does not depend on batch size and sequence length (computed once)."""

    cfg: object
    arch: object
    params: object
    act: object
    dtype_name: str
    dtype_bytes: int
    quant: str | None
    virtual: int
    prompt_based: bool
    spec: object                      # the method's MethodSpec (its capabilities and estimator hooks)
    notes: list
    cpu: bool = False
    autocast_name: str | None = None  # the dtype matmuls run in under the trainer's autocast
    packing: bool = False
    attention: str = ""               # the kernel the run will use
    attention_traced: str = ""        # the kernel the activation fit traced


def _check_sizes(cfg) -> None:
    t, d = cfg.train, cfg.data
    for path, value in (("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum),
                        ("data.max_length", d.max_length)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(path, "must be a whole number ≥ 1", value)


def _precision(cfg, gpu: Gpu | None, autocast_on: bool | None = None):
    """(weight dtype, autocast dtype) as engine.training runs on a GPU: bf16 where supported,
    fp16 on older cards, with the trainer's autocast following the weights' dtype.
    ``autocast_on=False`` models loops that run half-precision weights without autocast."""
    import torch

    want = cfg.model.dtype
    if gpu is not None and gpu.cpu:
        # engine.training on the CPU autocasts to bf16 with bf16 weights, and never to fp16.
        dt = resolve_dtype(want, "cpu")
        return dt, (dt if dt == torch.bfloat16 and autocast_on is not False else None)
    if want == "auto":
        dt = torch.bfloat16 if (gpu is None or gpu.bf16) else torch.float16
    else:
        dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[want]
    autocast = dt if dt != torch.float32 and autocast_on is not False else None
    return dt, autocast


def plan(cfg, gpu: Gpu | None = None, autocast: bool | None = None) -> _Plan:
    import torch

    _check_sizes(cfg)
    cfg = adopted(cfg)  # a run continuing an adapter (method.from_adapter) trains the adapter's settings
    spec = get_method(cfg.method.name)
    arch = load_arch(cfg.model)
    notes = list(arch.notes)
    dtype, autocast = _precision(cfg, gpu, autocast)
    quant = effective_quantization(cfg)
    params = count_params_for(arch, cfg, dtype)
    # Preference batches keep each prompt with its answers: never packed (engine.training.run).
    packing = bool(cfg.train.packing) and spec.can_pack and not get_task(cfg.train.task).is_preference
    attn = None if cfg.model.attn_implementation == "auto" else cfg.model.attn_implementation
    # The tracer runs on the CPU: CPU autocast stands in for CUDA autocast (same dtype policy for
    # the ops that matter here: matmuls in half precision, norms and softmax upcast).
    trace_dtype = torch.bfloat16 if dtype == torch.float16 else dtype
    trace_autocast = torch.bfloat16 if autocast is not None else None
    act = fit_activation_model(arch, cfg, dtype=trace_dtype, attn=attn, autocast_dtype=trace_autocast,
                               quantized=bool(quant), packing=packing, padded=not packing)
    if act.residual > 0.02:
        notes.append(f"the activation fit misses its tiny-width measurements by up to {act.residual:.0%} "
                     f"({spec.title}'s structure depends on layer widths); the activation term is approximate")
    cpu = bool(gpu is not None and gpu.cpu)
    return _Plan(cfg=cfg, arch=arch, params=params, act=act, dtype_name=str(dtype).replace("torch.", ""),
                 dtype_bytes=torch.tensor([], dtype=dtype).element_size(), quant=quant,
                 virtual=spec.virtual_tokens(cfg.method), prompt_based=spec.prompt_based, spec=spec, notes=notes,
                 cpu=cpu, autocast_name=str(autocast).replace("torch.", "") if autocast is not None else None,
                 packing=packing, attention=run_attention(arch, cfg, dtype, packing, cpu),
                 attention_traced=attn or default_attention(arch, dtype))


def default_attention(arch, dtype) -> str:
    """The kernel transformers gives the architecture when none is asked for."""
    from engine.estimate.counts import meta_model

    return getattr(meta_model(arch, dtype).config, "_attn_implementation", None) or "sdpa"


def run_attention(arch, cfg, dtype, packing: bool, cpu: bool) -> str:
    """The attention kernel engine.training will pick for this run (training.speed's rule, on a
    meta-device model of the architecture). flash-attention 2 counts only where the flash_attn
    package is installed on this machine."""
    import importlib.util

    import torch

    from engine.estimate.counts import meta_model
    from engine.training.speed import resolve_attention

    requested = cfg.model.attn_implementation
    if requested != "auto":
        return requested
    model = meta_model(arch, dtype)
    if (not cpu and importlib.util.find_spec("flash_attn") is not None and dtype in (torch.float16, torch.bfloat16)
            and getattr(model, "_supports_flash_attn", False)):
        return "flash_attention_2"
    # resolve_attention's CPU branch: flash_attn_usable is false without CUDA here.
    return resolve_attention(model, "auto", packing)


def _dtype_of(nbytes: int, half: str) -> str:
    return {4: "float32", 2: half, 1: "int8"}.get(nbytes, f"{nbytes} bytes")


def assumptions(p: _Plan) -> dict:
    """What the estimate assumed about the run, named: the attention kernel, the loss, packing,
    the dtype of each component. Shown under the table and given in the JSON."""
    cfg = p.cfg
    mode, chunk = loss_mode(p)
    loss = {"standard": "the model's own cross-entropy over full fp32 logits",
            "chunked": f"chunked linear cross-entropy, {chunk} tokens of logits at a time",
            "liger": "Liger's fused linear cross-entropy"}[mode]
    half = p.dtype_name
    if p.quant:
        bits = "about 4.1 bits a weight with double quantization" if p.cfg.model.double_quant and p.quant != "int8" \
            else ("8 bits a weight" if p.quant == "int8" else "4.5 bits a weight")
        linear = f"{p.quant} ({bits})"
        emb = ("float32 (model.upcast_embeddings: true)" if cfg.model.upcast_embeddings
               else f"{half} (model.upcast_embeddings: false)")
        other = "float32 (peft's k-bit preparation)"
    else:
        linear = emb = other = half
    trainable = sorted({_dtype_of(e, half) for _, e, _ in p.params.trainable}) or ["none"]
    opt = {"adamw_torch": "two float32 moments a parameter (AdamW)",
           "adamw_8bit": "two 8-bit moments a parameter (bitsandbytes)",
           "paged_adamw_8bit": "two 8-bit moments a parameter, paged outside the allocator",
           "adafactor": "factored float32 second moment", "sgd": "none (momentum 0)"}[cfg.train.optimizer]
    return {
        "attention": p.attention,
        "attention_traced": p.attention_traced,
        "loss": loss,
        "packing": bool(p.packing),
        "gradient_checkpointing": bool(cfg.train.gradient_checkpointing),
        "autocast": p.autocast_name,
        "dtypes": {
            "frozen linear weights": linear,
            "frozen embeddings and LM head": emb,
            "other frozen parameters (norms, biases)": other,
            "trainable parameters and gradients": ", ".join(trainable),
            "optimizer states": opt,
            "activations": _dtype_of(int(p.act.hidden_bytes), half),
            "logits": ("one chunk in the compute dtype and its float32 copy" if mode != "standard"
                       else "float32 (upcast for the loss)"),
        },
    }


# ---- the components ----------------------------------------------------------------------------

def embedding_bytes_per_value(p: _Plan) -> int:
    """Bytes per frozen embedding / LM head value on a quantized base: peft's
    prepare_model_for_kbit_training casts them to fp32, and training keeps that only with
    model.upcast_embeddings; otherwise it casts them back to the compute dtype
    (engine.training.speed.downcast_frozen_embeddings)."""
    return 4 if p.cfg.model.upcast_embeddings else p.dtype_bytes


def reference_adapter_bytes(p: _Plan) -> int:
    """A DPO/KTO run continuing a saved peft adapter keeps TRL's frozen ``ref`` copy of it as its
    reference (engine/training/preference.py): the trainable tensors once more, frozen. 0 else."""
    cfg = p.cfg
    if not (cfg.method.from_adapter and get_task(cfg.train.task).reference and p.spec.save is None):
        return 0
    return sum(n * e for n, e, _ in p.params.trainable)


def frozen_weight_bytes(p: _Plan) -> int:
    """The frozen tensors' bytes: the base's weights as stored (quantized or not), plus the
    reference adapter of a preference run continuing an adapter (reference_adapter_bytes)."""
    return _base_weight_bytes(p) + reference_adapter_bytes(p)


def _base_weight_bytes(p: _Plan) -> int:
    info = p.params
    if not p.quant:
        return info.frozen_bytes
    q = sum(quantized_weight_bytes(r, c, p.quant, p.cfg.model.double_quant) for r, c, _ in info.frozen_linear)
    # peft's prepare_model_for_kbit_training casts every non-quantized half-precision parameter
    # (embeddings, output head, norms) to fp32 "for stability"; the frozen embeddings and head then
    # follow model.upcast_embeddings.
    rest = info.frozen_other - info.frozen_embeddings
    return q + rest * 4 + info.frozen_embeddings * embedding_bytes_per_value(p)


def optimizer_bytes(p: _Plan) -> tuple[int, int, int]:
    """(state bytes inside the allocator, state bytes outside it, step temporaries)."""
    opt = p.cfg.train.optimizer
    inside = outside = temp = 0
    for numel, elem, shape in p.params.trainable:
        if opt == "adamw_torch":
            inside += 2 * numel * elem
            temp += numel * elem            # foreach AdamW: sqrt(exp_avg_sq) as a new tensor list
        elif opt in ("adamw_8bit", "paged_adamw_8bit"):
            # bitsandbytes: two uint8 states with an fp32 absmax per 256-element block, except for
            # tensors under 4096 elements, which keep 32-bit state.
            b = 2 * numel + 2 * 4 * -(-numel // 256) if numel >= 4096 else 8 * numel
            if opt.startswith("paged"):
                outside += b
            else:
                inside += b
        elif opt == "adafactor":
            # Factored second moment for matrices (a row and a column vector), no first moment.
            if len(shape) >= 2:
                rows = numel // shape[-1]
                inside += 4 * (rows + numel // shape[-2])
            else:
                inside += 4 * numel
            temp += 4 * numel
        # sgd (momentum 0, the trainer's default) keeps no state.
    return inside, outside, temp


def _largest_linear(p: _Plan) -> tuple[int, int]:
    best = (0, 0)
    for r, c, _ in p.params.frozen_linear:
        if r * c > best[0] * best[1]:
            best = (r, c)
    return best


def transients(p: _Plan, batch: int, seq: int) -> dict:
    """Short-lived buffers: (forward, backward) working sets beyond the saved activations."""
    a = p.arch
    rows, cols = _largest_linear(p)
    fwd = bwd = 0
    if p.quant:
        # bitsandbytes dequantizes a 4-bit weight to the compute dtype for each matmul, forward
        # and backward, and frees it after.
        bwd += rows * cols * p.dtype_bytes
        fwd += rows * cols * p.dtype_bytes
    # What the method itself allocates per forward (DoRA recomputes its weight norm).
    fwd += p.spec.forward_transient(p.cfg.method, rows, cols)
    tokens = batch * (seq + p.spec.input_tokens(p.cfg.method))
    # Gradients flowing through one layer: the residual stream's and the MLP's, in and out.
    bwd += 2 * tokens * (a.hidden + a.intermediate) * p.act.hidden_bytes
    return {"forward": fwd, "backward": bwd}


def loss_mode(p: _Plan) -> tuple[str, int]:
    """How engine.training computes the loss (see engine/training/loss.py), and its chunk size in tokens.
    ``standard``: the model's own cross-entropy over full fp32 logits; ``chunked``/``liger``:
    from the hidden states, one chunk of logits at a time."""
    cfg = p.cfg
    requested = getattr(cfg.train, "loss_impl", "standard")
    if requested == "standard" or p.prompt_based:
        return "standard", 0
    # A wrapped head (LoRA on lm_head, modules_to_save) is not the plain linear layer the chunked
    # loss multiplies with.
    if p.arch.model_type not in PLAIN_HEAD_MODEL_TYPES or p.spec.head(cfg.method) == "wrapped":
        return "standard", 0
    impl = resolve_loss_impl(requested, "cpu" if p.cpu else "cuda")
    chunk = getattr(cfg.train, "loss_chunk_tokens", 0) or auto_chunk_tokens(p.arch.vocab)
    return impl, int(chunk)


def logits_bytes(p: _Plan, rows: int, pred: dict) -> int:
    """Peak working set of the loss for ``rows`` positions (all labelled: the worst case)."""
    a = p.arch
    mode, chunk = loss_mode(p)
    if mode == "standard":
        # The saved fp32 log-softmax output, its incoming gradient and the gradient it produces.
        return int(rows * a.vocab * (pred["logits_saved_per_element"] + 8))
    # Chunked (and Liger's fused) linear cross-entropy: the gradient w.r.t. the hidden states is
    # computed in the forward and kept (rows × hidden), one chunk of logits exists at a time (the
    # half-precision matmul output and its fp32 copy), and the backward scales the kept gradient
    # into a new tensor. A trainable head adds its fp32 gradient.
    hb = p.act.hidden_bytes
    chunk = min(chunk, rows)
    head_trains = p.spec.head(p.cfg.method) == "trained"
    grad_w = a.vocab * a.hidden * 4 if head_trains else 0
    fwd = rows * a.hidden * hb + chunk * a.vocab * (p.dtype_bytes + 4) + grad_w
    bwd = 2 * rows * a.hidden * hb + 2 * grad_w
    return int(max(fwd, bwd))


def eval_logits_bytes(p: _Plan, rows: int) -> int:
    """Working set of an evaluation batch's loss (0 without evaluation): the logits in the
    compute dtype, their fp32 copy (transformers' ForCausalLMLoss upcasts) and cross-entropy's
    fp32 log-softmax."""
    d = p.cfg.data
    if not (d.validation_path or d.validation_split > 0):
        return 0
    upcast = 4 if p.dtype_bytes < 4 else 0
    return int(rows * p.arch.vocab * (p.dtype_bytes + upcast + 4))


def _overhead(p, cfg, comp: dict, allocated: float, static: float, comm: int = 0) -> int:
    """Bytes the allocator holds beyond ``allocated`` (fragmentation; the FRAG_* fits above), and
    the fixed costs outside it written into ``comp`` (the CPU runtime, or the CUDA context with
    bitsandbytes' kernels and ``comm`` bytes of collective buffers)."""
    dynamic = allocated - static
    if p.cpu:
        comp["runtime"] = RUNTIME_CPU
        return int(FRAG_CPU * dynamic)
    uses_bnb = bool(p.quant) or cfg.train.optimizer in ("adamw_8bit", "paged_adamw_8bit")
    comp["cuda_context"] = CUDA_CONTEXT + (BNB_CONTEXT if uses_bnb else 0) + comm
    return int(FRAG_DYNAMIC * dynamic + FRAG_STATIC * static + FRAG_FIXED)


def breakdown(p: _Plan, batch: int, seq: int, layout: sharding.Layout | None = None) -> dict:
    """All figures for one (batch, seq): phases, the peak phase's components, sizes; per rank
    under ``layout`` (several processes: engine.estimate.sharding), with ``resident`` (what the
    rank keeps between steps) and ``cpu_offloaded``."""
    if layout is not None and layout.kind != "single":
        return _breakdown_sharded(p, layout, batch, seq)
    a, info, cfg = p.arch, p.params, p.cfg
    batch = batch * sequences_per_example(cfg)
    shape = Shape(a.hidden, a.intermediate, a.heads, a.kv_heads, a.head_dim, a.vocab, a.layers)
    pred = p.act.predict(shape, batch, seq, p.virtual)
    ref = reference_forward_bytes(cfg, pred)
    frozen = frozen_weight_bytes(p)
    trainable = sum(n * e for n, e, _ in info.trainable)
    grads = trainable
    opt_in, opt_out, opt_temp = optimizer_bytes(p)
    T = pred["positions"]
    logit_rows = batch * T if not p.act.packed else T
    logits = logits_bytes(p, logit_rows, pred)
    tr = transients(p, batch, seq)
    gc = bool(cfg.train.gradient_checkpointing)
    acts = (pred["checkpointed"] + pred["outside"]) if gc else (pred["layers"] + pred["outside"])
    accum = grads if cfg.train.grad_accum > 1 else 0      # grads live across micro-batches
    static = frozen + trainable + opt_in
    phases = {
        "loss": static + accum + acts + max(logits, tr["forward"]) + ref,
        "backward": static + grads + acts + tr["backward"] + (pred["per_layer"] if gc else 0),
        "step": static + grads + opt_temp,
    }
    eval_logits = eval_logits_bytes(p, logit_rows)
    if eval_logits:
        # Evaluation runs between steps (gradients freed): no saved activations, but the model's
        # own loss over full logits — the chunked loss is for training only.
        phases["eval"] = static + eval_logits
    peak_phase = max(phases, key=phases.get)
    sizes = {"frozen_weights": frozen, "trainable_params": trainable, "gradients": grads,
             "optimizer_states": opt_in + opt_out, "activations": acts, "logits_loss": logits,
             "reference_forward": ref, "transient": max(tr["forward"], tr["backward"], opt_temp)}
    comp = dict.fromkeys(COMPONENTS, 0)
    comp.update(frozen_weights=frozen, trainable_params=trainable, optimizer_states=opt_in)
    if peak_phase == "loss":
        comp.update(gradients=accum, activations=acts, reference_forward=ref)
        if logits >= tr["forward"]:
            comp["logits_loss"] = logits
        else:
            comp["transient"] = tr["forward"]
    elif peak_phase == "eval":
        comp["logits_loss"] = eval_logits
    elif peak_phase == "backward":
        comp.update(gradients=grads, activations=acts + (pred["per_layer"] if gc else 0),
                    transient=tr["backward"])
    else:
        comp.update(gradients=grads, transient=opt_temp)
    allocated = phases[peak_phase]
    overhead = _overhead(p, cfg, comp, allocated, static)
    comp["allocator_overhead"] = overhead
    comp["outside_allocator"] = opt_out
    comp = {k: int(v) for k, v in comp.items()}
    reserved = int(allocated) + overhead
    return {"components": comp, "peak_allocated": int(allocated), "peak_reserved": reserved,
            "device_total": reserved + comp["cuda_context"] + comp["runtime"] + opt_out,
            "phases": {k: int(v) for k, v in
                                                                              phases.items()},
            "peak_phase": peak_phase, "sizes": {k: int(v) for k, v in sizes.items()}, "positions": T,
            "resident": sharding.resident(sizes_of(p), sharding.Layout("single")), "cpu_offloaded": 0}


def sequences_per_example(cfg) -> int:
    """Sequences one training example puts through the model: 1 for SFT, 2 for the preference
    tasks (chosen and rejected, or KTO's answer and its mismatched KL answer): engine/tasks.py."""
    return get_task(cfg.train.task).sequences_per_example


def reference_forward_bytes(cfg, pred: dict) -> int:
    """The reference forward's working set on top of the loss phase (module docstring): one
    layer's activations of the step's sequences; 0 for tasks without a reference or with
    precomputed reference log-probabilities."""
    task = get_task(cfg.train.task)
    if not task.reference or cfg.train.preference.precompute_ref_log_probs:
        return 0
    return int(pred["per_layer"])


def sizes_of(p: _Plan) -> sharding.Sizes:
    """The figures engine.estimate.sharding divides between ranks."""
    opt_in, opt_out, opt_temp = optimizer_bytes(p)
    info = p.params
    return sharding.Sizes(frozen=frozen_weight_bytes(p), trainable=sum(n * e for n, e, _ in info.trainable),
                          trainable_elements=sum(n for n, _, _ in info.trainable), optimizer_inside=opt_in,
                          optimizer_outside=opt_out, optimizer_temp=opt_temp, dtype_bytes=p.dtype_bytes,
                          vocab=p.arch.vocab, hidden=p.arch.hidden, layers=p.arch.layers, tied=bool(info.tied))


def _breakdown_sharded(p: _Plan, lay: sharding.Layout, batch: int, seq: int) -> dict:
    """breakdown() per rank of a several-process run: the resident state and the gathered units
    from engine.estimate.sharding; activations, logits and autograd's transients as on one GPU
    (each rank runs its own per-device batch through whole layers)."""
    a, cfg = p.arch, p.cfg
    batch = batch * sequences_per_example(cfg)
    shape = Shape(a.hidden, a.intermediate, a.heads, a.kv_heads, a.head_dim, a.vocab, a.layers)
    pred = p.act.predict(shape, batch, seq, p.virtual)
    ref = reference_forward_bytes(cfg, pred)
    z = sizes_of(p)
    res = sharding.resident(z, lay)
    T = pred["positions"]
    logit_rows = batch * T if not p.act.packed else T
    logits = logits_bytes(p, logit_rows, pred)
    tr = transients(p, batch, seq)
    gc = bool(cfg.train.gradient_checkpointing)
    acts = (pred["checkpointed"] + pred["outside"]) if gc else (pred["layers"] + pred["outside"])
    work_fwd, work_bwd = sharding.working_set(z, lay)
    grads = res["gradients"]
    accum = grads if cfg.train.grad_accum > 1 else 0
    static = res["parameters"] + res["optimizer_states"]
    s = max(1, lay.shard_group if lay.kind != "ddp" else 1)
    step_temp = 0 if (lay.cpu_offload or lay.offload_optimizer) else z.optimizer_temp // s
    phases = {
        "loss": static + accum + acts + max(logits, tr["forward"]) + work_fwd + ref,
        "backward": static + grads + acts + tr["backward"] + (pred["per_layer"] if gc else 0) + work_bwd,
        "step": static + grads + step_temp,
    }
    eval_logits = eval_logits_bytes(p, logit_rows)
    if eval_logits:
        phases["eval"] = static + eval_logits + work_fwd
    peak_phase = max(phases, key=phases.get)
    comp = dict.fromkeys(COMPONENTS, 0)
    comp.update(frozen_weights=res["parameters"], optimizer_states=res["optimizer_states"])
    if peak_phase == "loss":
        comp.update(gradients=accum, activations=acts, transient=work_fwd, reference_forward=ref)
        comp["logits_loss" if logits >= tr["forward"] else "transient"] += max(logits, tr["forward"])
    elif peak_phase == "backward":
        comp.update(gradients=grads, activations=acts + (pred["per_layer"] if gc else 0),
                    transient=tr["backward"] + work_bwd)
    elif peak_phase == "eval":
        comp.update(logits_loss=eval_logits, transient=work_fwd)
    else:
        comp.update(gradients=grads, transient=step_temp)
    allocated = phases[peak_phase]
    overhead = _overhead(p, cfg, comp, allocated, static, comm=sharding.COMM_BUFFERS)
    comp["allocator_overhead"] = overhead
    comp["outside_allocator"] = res["optimizer_outside"]
    comp = {k: int(v) for k, v in comp.items()}
    reserved = int(allocated) + overhead
    return {"components": comp, "peak_allocated": int(allocated), "peak_reserved": reserved,
            "device_total": reserved + comp["cuda_context"] + comp["runtime"] + res["optimizer_outside"],
            "phases": {k: int(v) for k, v in phases.items()}, "peak_phase": peak_phase,
            "sizes": {"frozen_weights": res["parameters"], "gradients": grads,
                      "optimizer_states": res["optimizer_states"], "activations": int(acts),
                      "logits_loss": int(logits), "reference_forward": int(ref),
                      "transient": int(max(work_fwd, work_bwd))},
            "positions": T, "resident": res, "cpu_offloaded": res["cpu_offloaded"]}


def fitting(p: _Plan, gpu: Gpu, batch: int, seq: int, counts=sharding.CANDIDATE_COUNTS) -> list[dict]:
    """For a configuration one GPU cannot hold: the fewest GPUs (of ``counts``) on which a
    layout without offload fits, and before that the fewest on which CPU offload fits, each as
    {"layout", "label", "gpus", "per_gpu", "text"}. Empty when nothing up to the largest
    count fits."""
    out: list[dict] = []
    for n in counts:
        for lay in sharding.candidates(n):
            if lay.offloads and any(o["layout"].offloads for o in out):
                continue    # offload already fits on fewer GPUs
            total = breakdown(p, batch, seq, lay)["device_total"]
            if total <= gpu.total_bytes:
                out.append({"layout": lay, "label": lay.label, "gpus": n, "per_gpu": total,
                            "text": f"{lay.label} over {n} × {sharding.size_text(gpu.total_bytes)}: "
                                    f"{total / GiB:.1f} GB each"})
                if not lay.offloads:
                    return out
                break
    return out


# ---- verdict -----------------------------------------------------------------------------------

def _verdict(total: int, gpu: Gpu | None) -> str:
    if gpu is None:
        return "unknown"
    if total > gpu.total_bytes:
        return "exceeds"
    return "tight" if total > TIGHT * gpu.total_bytes else "fits"


def _largest(fits, lo: int, hi: int) -> int | None:
    """The largest n in [lo, hi] with fits(n), assuming monotonicity; None if not even lo."""
    if not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fmt(b: float) -> str:
    return f"{b / GiB:.1f} GiB"


def suggestions(p: _Plan, batch: int, seq: int, gpu: Gpu, total: int) -> list[str]:
    """Concrete changes, each with the memory it saves, largest saving first."""
    cfg = p.cfg
    out: list[tuple[int, str]] = []

    def saving(**changes) -> int:
        q = copy.copy(p)
        q.cfg = copy.deepcopy(cfg)
        for path, value in changes.items():
            section, name = path.split("__")
            setattr(getattr(q.cfg, section), name, value)
        b = changes.get("train__batch_size", batch)
        s = changes.get("data__max_length", seq)
        return total - breakdown(q, b, s)["device_total"]

    if not cfg.train.gradient_checkpointing:
        out.append((saving(train__gradient_checkpointing=True),
                    "turn on gradient checkpointing (train.gradient_checkpointing: true; ~30% slower)"))
    if batch > 1:
        nb = max(1, batch // 2)
        out.append((saving(train__batch_size=nb),
                    f"halve the batch and double accumulation (train.batch_size: {nb}, "
                    f"train.grad_accum: {cfg.train.grad_accum * 2}; same effective batch)"))
    if seq > 256:
        out.append((saving(data__max_length=seq // 2),
                    f"shorten sequences (data.max_length: {seq // 2})"))
    if cfg.train.optimizer == "adamw_torch" and sum(n for n, _, _ in p.params.trainable) > 0 and not p.cpu:
        out.append((saving(train__optimizer="paged_adamw_8bit"),
                    "keep optimizer state in 8 bits (train.optimizer: adamw_8bit or paged_adamw_8bit)"))
    variant = p.spec.quantized_variant
    if not p.quant and variant and not p.cpu:   # bitsandbytes 4-bit needs a GPU
        nf4 = sum(quantized_weight_bytes(r, c, "nf4", True) for r, c, _ in p.params.frozen_linear)
        emb, rest = p.params.frozen_embeddings, p.params.frozen_other - p.params.frozen_embeddings
        upcast = (4 - p.dtype_bytes) if cfg.model.upcast_embeddings else 0
        saved = p.params.frozen_bytes - nf4 - rest * (4 - p.dtype_bytes) - emb * upcast
        out.append((saved, f"load the base in 4 bits (method.name: {variant}); activations then run partly "
                           "in fp32, so re-estimate"))
    out += [(0, text) for text in p.spec.memory_suggestions(cfg.method)]
    out.sort(key=lambda x: -x[0])
    lines = []
    for s, text in out:
        lines.append(f"{text}: saves about {_fmt(s)}" if s > 0 else text)
    return lines


# ---- entry point -------------------------------------------------------------------------------

def resolve_gpu(gpu: str | Gpu | None) -> Gpu | None:
    """A Gpu to judge against. None / "auto": this machine — its GPU, or without one its CPU and
    RAM, where engine.training then runs."""
    if isinstance(gpu, Gpu):
        return gpu
    if gpu is None or str(gpu).strip().lower() in ("", "auto", "detect"):
        return detect_gpu() or this_cpu()
    return parse_gpu(gpu)


def count_params_on(cfg, gpu: str | Gpu | None = None) -> dict:
    """``{total_params, trainable_params, adapter_bytes}`` as ``estimate(cfg, gpu)`` reports them:
    the tensors are sized in the dtype the run trains in on ``gpu`` (None: this machine), so a
    full fine-tune's saved size is the same figure wherever the studio shows it (bfloat16 weights
    on a GPU, float32 on the CPU)."""
    dtype, _ = _precision(cfg, resolve_gpu(gpu), None)
    cfg = adopted(cfg)
    info = count_params_for(load_arch(cfg.model), cfg, dtype)
    return {"total_params": info.total_params, "trainable_params": info.trainable_params,
            "adapter_bytes": info.adapter_bytes}


def estimate(cfg, gpu: str | Gpu | None = None, *, autocast: bool | None = None) -> Estimate:
    """Predict the peak GPU memory of training ``cfg``, by component, against ``gpu`` (a name or
    size such as ``"24GB"``/``"A100-80GB"``; None: the GPU in this machine, if any).

    ``autocast`` (default: what engine.training does, i.e. on for half-precision weights) lets the
    accuracy harness model other training loops, such as peft's benchmark without AMP."""
    g = resolve_gpu(gpu)
    p = plan(cfg, g, autocast)
    batch, seq = cfg.train.batch_size, cfg.data.max_length
    lay = sharding.layout_of(cfg.train.distributed)

    def per_rank(b_: int, s_: int) -> dict:
        return breakdown(p, b_, s_, lay)

    b = per_rank(batch, seq)
    notes = list(p.notes)
    if lay.kind != "single":
        notes.append(f"per GPU: {lay.label} over {lay.processes} processes; each runs batch_size "
                     f"{batch} (effective batch × {lay.processes})")
        if b["cpu_offloaded"]:
            notes.append(f"{b['cpu_offloaded'] / GiB:.1f} GiB per process kept in CPU memory (offload)")
    if not p.spec.can_pack and cfg.train.packing:
        notes.append("prompt-based methods cannot pack examples; estimated with padded batches")
    if p.virtual and p.spec.prompt == "input":
        notes.append(f"{p.virtual} virtual tokens lengthen every sequence to {b['positions']} positions")
    elif p.virtual:
        notes.append(f"{p.spec.title.lower()} adds {p.virtual} key/value positions in every layer")
    task = get_task(cfg.train.task)
    if task.is_preference:
        n = batch * task.sequences_per_example
        ref_copy = reference_adapter_bytes(p)
        if ref_copy:
            ref = (f", plus the reference forward through a frozen copy of the starting adapter "
                   f"({ref_copy / MiB:.1f} MiB, with the frozen weights; no second copy of the base)")
        else:
            ref = ", plus the reference forward with the adapter disabled (no second copy of the weights)"
        notes.append(f"{task.title}: {task.sequences_per_example} sequences per example ({n} of up to "
                     f"{seq} tokens per step)" + (ref if task.reference else ""))
    elif cfg.train.packing and p.spec.can_pack:
        notes.append(f"packing: each step is one row of batch × max_length = {batch * seq} tokens")
    mode, chunk = loss_mode(p)
    if mode != "standard":
        notes.append(f"loss: {'Liger fused' if mode == 'liger' else 'chunked'} linear cross-entropy, "
                     f"{chunk} tokens of logits at a time (train.loss_impl: standard keeps full logits)")
    notes.append(f"peak during the {b['peak_phase']} phase; weights in {p.quant or p.dtype_name}")
    est = Estimate(components=b["components"], peak_allocated=b["peak_allocated"],
                   peak_reserved=b["peak_reserved"], device_total=b["device_total"],
                   total_params=p.params.total_params, trainable_params=p.params.trainable_params,
                   adapter_bytes=p.params.adapter_bytes, verdict=_verdict(b["device_total"], g),
                   gpu_name=g.name if g else None, gpu_bytes=g.total_bytes if g else None,
                   notes=notes, sizes=b["sizes"], phases=b["phases"], peak_phase=b["peak_phase"],
                   dtype=p.dtype_name, quantization=p.quant, batch_size=batch, seq_len=seq,
                   tokens_per_step=batch * seq * cfg.train.grad_accum, generic=p.arch.generic, on_cpu=p.cpu,
                   layout=lay.label, processes=lay.processes, resident=b["resident"],
                   cpu_offloaded=b["cpu_offloaded"], assumptions=assumptions(p))
    if g is not None:
        cap = g.total_bytes
        est.max_batch_size = _largest(lambda n: per_rank(n, seq)["device_total"] <= cap, 1, 4096)
        max_pos = int(getattr(p.arch.hf_config, "max_position_embeddings", 0) or 131072)
        est.max_seq_len = _largest(lambda n: per_rank(batch, n)["device_total"] <= cap, 8,
                                   max(8, min(max_pos, 1 << 20)))
        if est.verdict != "fits":
            if lay.kind == "single":
                est.suggestions = suggestions(p, batch, seq, g, b["device_total"])
            if not p.cpu:
                # Which strategy and how many GPUs of this kind would hold it.
                est.sharding_options = [o["text"] for o in fitting(p, g, batch, seq)]
                est.suggestions += [f"spread it over GPUs: {t} (train.distributed)" for t in est.sharding_options]
    return est
