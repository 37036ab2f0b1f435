"""What one rank really holds: bytes of parameters, gradients and optimizer state.

Under FSDP a parameter is a DTensor whose local shard is this rank's share (FSDP1: a flat
parameter already holding only the shard); elsewhere it is the whole tensor. The figures are
what the estimator's sharded per-GPU model (``engine.estimate.sharding``) predicts, and the
``finished`` event carries them for every rank (``rank_bytes``) so that a run can be checked
against its estimate. Activations are not counted: they are transient and not sharded.
"""

from __future__ import annotations


def _local(t):
    return t.to_local() if hasattr(t, "to_local") else t


def held_bytes(model, optimizer) -> dict:
    """{"parameters", "gradients", "optimizer_states"}: bytes of this rank's local tensors.
    Tied parameters count once; gradients are those present now (call it between backward and
    the optimizer step); optimizer states every tensor in the optimizer's state."""
    import torch

    seen, params, grads = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        t = _local(p)
        params += t.numel() * t.element_size()
        if p.grad is not None:
            g = _local(p.grad)
            grads += g.numel() * g.element_size()
    inner = getattr(optimizer, "optimizer", optimizer)   # accelerate's AcceleratedOptimizer wraps it
    states = 0
    for state in getattr(inner, "state", {}).values():
        for v in state.values():
            if torch.is_tensor(v):
                t = _local(v)
                states += t.numel() * t.element_size()
    return {"parameters": params, "gradients": grads, "optimizer_states": states}


def make_callback(store: dict):
    """A Trainer callback that measures :func:`held_bytes` before the second optimizer step (the
    first one at which optimizer state exists) and gathers every rank's figures into
    ``store["rank_bytes"]`` (a list indexed by rank) at the end of training."""
    from transformers import TrainerCallback

    class HeldBytes(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kw):
            if state.global_step == 1 and model is not None and optimizer is not None:
                store["mine"] = held_bytes(model, optimizer)

        def on_train_end(self, args, state, control, **kw):
            import torch.distributed as dist

            mine = store.get("mine")
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                every: list = [None] * dist.get_world_size()
                dist.all_gather_object(every, mine)
                store["rank_bytes"] = every
            elif mine is not None:
                store["rank_bytes"] = [mine]

    return HeldBytes()
