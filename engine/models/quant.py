"""Quantized weights: their exact storage size, and real bitsandbytes layers for the tracer.

Storage of one bitsandbytes 4-bit weight of ``n`` elements (blocksize 64):
  packed data   n / 2 bytes (two 4-bit codes per byte)
  absmax        one per 64-element block: fp32, or with double quantization one uint8 per block
                plus a second-level fp32 absmax per 256 blocks and a 256-entry fp32 code book
so NF4 costs 4.5 bits per weight without double quantization and about 4.13 bits with it, which
is the QLoRA paper's arithmetic. 8-bit (LLM.int8) keeps an int8 weight and one fp32 scale per
output row. Layers transformers leaves unquantized (the output head, embeddings, norms) keep the
compute dtype, and peft's ``prepare_model_for_kbit_training`` then casts those to fp32.
"""

from __future__ import annotations

from engine.models.introspect import LINEAR_SKIP

BLOCK_4BIT = 64
BLOCK_NESTED = 256
CODEBOOK_BYTES = 256 * 4 + 16 * 4 + 4   # nested code book + NF4 code + offset, per tensor


def quantized_weight_bytes(rows: int, cols: int, quant: str, double_quant: bool = True) -> int:
    n = rows * cols
    if quant == "int8":
        return n + rows * 4
    blocks = -(-n // BLOCK_4BIT)
    if double_quant:
        return n // 2 + blocks + 4 * -(-blocks // BLOCK_NESTED) + CODEBOOK_BYTES
    return n // 2 + 4 * blocks + 16 * 4


def is_quantizable(name: str, module) -> bool:
    """transformers' bitsandbytes integration quantizes every nn.Linear except the output head."""
    import torch

    return isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in LINEAR_SKIP


def quantize_in_place(model, quant: str | None, double_quant: bool, compute_dtype) -> None:
    """Swap the model's linear layers for bitsandbytes ones (``quant``: nf4, fp4 or int8; None
    means nf4), as ``from_pretrained`` with a BitsAndBytesConfig would, and mark the model as
    loaded in k-bit so the method applies peft's k-bit preparation. Used at tiny width on the
    CPU only."""
    import bitsandbytes as bnb
    import torch

    quant = quant or "nf4"
    targets = [(n, m) for n, m in model.named_modules() if is_quantizable(n, m)]
    for name, lin in targets:
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        w = lin.weight.data.to(torch.float32 if compute_dtype is None else compute_dtype)
        if quant == "int8":
            new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      has_fp16_weights=False)
            new.weight = bnb.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
        else:
            dq = bool(double_quant)
            new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    compute_dtype=compute_dtype, quant_type=quant, compress_statistics=dq)
            new.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type=quant,
                                           compress_statistics=dq)
        if lin.bias is not None:
            new.bias = torch.nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        setattr(parent, name.rsplit(".", 1)[-1], new.to("cpu"))
    if quant == "int8":
        model.is_loaded_in_8bit = True
    else:
        model.is_loaded_in_4bit = True
