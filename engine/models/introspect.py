"""What a model is made of, read from its modules (a meta-device model will do)."""

from __future__ import annotations


def real_numel(p) -> int:
    """The number of values a parameter stands for. A bitsandbytes 4-bit weight (``Params4bit``)
    packs two values per byte into a flat uint8 tensor, so its ``numel()`` is half the weight's;
    its quantization state keeps the original shape."""
    state = getattr(p, "quant_state", None)
    shape = getattr(state, "shape", None)
    if shape is not None:
        n = 1
        for d in shape:
            n *= int(d)
        return n
    return p.numel()


def count_parameters(model) -> int:
    """Parameters of ``model``, each tensor once, quantized ones counted by the values they hold
    (:func:`real_numel`)."""
    # Count each tensor once: tied embeddings share storage and would otherwise count twice.
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += real_numel(p)
    return total


LINEAR_SKIP = ("lm_head", "embed_out", "output_layer")


def linear_module_names(model) -> list[str]:
    """Leaf names of the linear layers inside the decoder (what LoRA can target)."""
    import torch

    names = set()
    for full, mod in model.named_modules():
        leaf = full.rsplit(".", 1)[-1]
        if leaf in LINEAR_SKIP:
            continue
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ in ("Linear4bit", "Linear8bitLt", "Conv1D"):
            names.add(leaf)
    return sorted(names)


def unique_params(model):
    """(name, parameter) pairs, each tensor once (tied weights share one tensor)."""
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield name, p
