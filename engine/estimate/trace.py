"""Measure what autograd keeps for the backward pass, by running the real code at tiny width.

A forward pass in training mode stores tensors for the backward pass (layer inputs, attention
outputs, MLP intermediates, dropout masks, fp32 upcasts...). Which ones, in which dtype, depends
on the architecture, the attention kernel, the method's wrappers and the dtype policy, and no
formula written by hand keeps up with all of that. So we run the real thing: the architecture's
own transformers classes, shrunk to a few dozen channels and three layers, wrapped by the real
method (``engine.methods.apply_method``), and record every tensor handed to autograd through
``torch.autograd.graph.saved_tensors_hooks``. Bytes are counted per storage (views of one
buffer count once; parameters count zero) and attributed to the decoder layer that saved them.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import dataclass, field

from engine.methods import apply_method, effective_quantization
from engine.models.quant import quantize_in_place


@dataclass
class TraceResult:
    layer_bytes: list[int]            # bytes first saved inside each decoder layer
    outside_bytes: int                # embeddings, final norm, head and loss
    total_bytes: int
    hidden_bytes: int                 # element size of the hidden states entering the layers
    seq_len: int                      # positions per row as the layers saw them (virtual tokens included)
    by_dtype: dict = field(default_factory=dict)

    @property
    def per_layer(self) -> float:
        """Average over the layers after the first: the first also stores tensors every layer
        shares (rotary cos/sin, masks), which belong to the model once, not per layer."""
        rest = self.layer_bytes[1:] or self.layer_bytes
        return sum(rest) / len(rest)


def decoder_layers(model):
    """The repeated decoder blocks of a (possibly peft-wrapped) causal LM."""
    import torch

    best = None
    for _name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) > 0:
            if best is None or len(mod) > len(best):
                best = mod
    if best is None:
        raise ValueError("no decoder layer list found in the model")
    return list(best)


@contextlib.contextmanager
def record_saved(model):
    """Context manager yielding a recorder; inside it every tensor autograd saves is counted."""
    import torch

    layers = decoder_layers(model)
    params = {p.untyped_storage().data_ptr() for p in model.parameters() if p.device.type != "meta"}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers() if b.device.type != "meta"}
    rec = {"where": None, "seen": {}, "hidden": None}

    def pre(idx):
        def hook(_mod, args, kwargs):
            rec["where"] = idx
            h = args[0] if args else kwargs.get("hidden_states")
            if idx == len(layers) - 1 and torch.is_tensor(h):
                rec["hidden"] = h.element_size()
        return hook

    def post(_mod, _args, _out):
        rec["where"] = None

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(pre(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(post))

    def pack(t):
        if t.layout != torch.strided:
            # Sparse tensors have no single storage: count their values and indices.
            key, nbytes = ("sparse", id(t)), _sparse_nbytes(t)
        else:
            st = t.untyped_storage()
            key, nbytes = st.data_ptr(), st.nbytes()
            if not key or key in params:
                return t
        old = rec["seen"].get(key)
        # Only tensors still alive at the end of the forward count: a graph that is built and
        # dropped inside the forward (DoRA's detached weight norm) frees what it saved, and
        # its address may then be reused by a later tensor.
        if old is None or old[3]() is None:
            rec["seen"][key] = (rec["where"], nbytes, str(t.dtype), weakref.ref(t))
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield rec
    finally:
        for h in handles:
            h.remove()
        rec["layers"] = len(layers)


def _sparse_nbytes(t) -> int:
    try:
        return sum(x.numel() * x.element_size() for x in (t._values(), t._indices()))
    except (RuntimeError, NotImplementedError):
        return 0


def summarize(rec, seq_len: int) -> TraceResult:
    per = [0] * rec["layers"]
    outside = 0
    by_dtype: dict[str, int] = {}
    for where, nbytes, dtype, ref in rec["seen"].values():
        if ref() is None:
            continue
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
        if where is None:
            outside += nbytes
        else:
            per[where] += nbytes
    return TraceResult(layer_bytes=per, outside_bytes=outside, total_bytes=sum(per) + outside,
                       hidden_bytes=rec["hidden"] or 0, seq_len=seq_len, by_dtype=by_dtype)


def build_model(hf_config, run_cfg, dtype, attn: str | None, quantized: bool = False):
    """The architecture at whatever size ``hf_config`` says, on the CPU, wrapped by the method."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype}
    if attn:
        kwargs["attn_implementation"] = attn
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(copy.deepcopy(hf_config), **kwargs)
    if quantized:
        quantize_in_place(model, effective_quantization(run_cfg), run_cfg.model.double_quant, dtype)
    model = apply_method(model, run_cfg)
    if run_cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def batch_inputs(vocab: int, batch: int, seq: int, packing: bool, padded: bool):
    """Token ids as training sees them: packed rows restart position_ids at each example,
    padded rows carry an attention mask with zeros."""
    import torch

    g = torch.Generator().manual_seed(0)
    if packing:
        # engine.data's packed collator: the whole batch flattened into one row, positions
        # restarting at every example, no attention mask.
        n = batch * seq
        ids = torch.randint(3, vocab, (1, n), generator=g)
        half = max(seq // 2, 1)
        pos = torch.arange(n) % half
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": pos[None]}
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    inputs = {"input_ids": ids, "labels": ids.clone()}
    if padded:
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, -max(1, seq // 4):] = 0
        inputs["attention_mask"] = mask
    return inputs


def trace_model(model, vocab: int, batch: int, seq: int, *, packing: bool = False, padded: bool = False,
                autocast_dtype=None, prompt_based: bool = False, virtual: int = 0) -> TraceResult:
    """Run one training-mode forward (with the loss) and count what autograd saved."""
    import torch

    inputs = batch_inputs(vocab, batch, seq, packing and not prompt_based, padded)
    if prompt_based and "attention_mask" not in inputs:
        inputs["attention_mask"] = torch.ones(batch, seq, dtype=torch.long)
    ctx = (torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())
    with record_saved(model) as rec, ctx:
        out = model(**inputs)
    # Summarize while the graph (held by the loss) is alive, then let it go.
    result = summarize(rec, seq + virtual)
    del out
    return result
