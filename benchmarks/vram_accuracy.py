"""How right is the memory estimator? Prints (and with --write, records) estimate vs measured.

    python benchmarks/vram_accuracy.py            # CPU checks; the GPU grid too when CUDA is there
    python benchmarks/vram_accuracy.py --write    # also rewrite the tables in docs/estimator-accuracy.md

On a CUDA machine it runs a grid of real training configurations (random-initialised weights of
small real architectures: memory does not depend on the values), several optimizer steps each,
and compares ``torch.cuda.max_memory_allocated/reserved`` and the NVML device use with the
estimate. On any machine it checks the parts that need no GPU: exact parameter counts against
published totals, and the activation term against the bytes autograd really saves in a forward
pass of the tiny test model and of the demo model's architecture. It also lists our estimate
beside published measurements whose configurations are known (peft's method comparison,
torchtune's README).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIGS = ROOT / "tests" / "data" / "configs"
DOC = ROOT / "docs" / "estimator-accuracy.md"
GiB = 1 << 30

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_cfg(model, method="lora", train=None, data=None, mdl=None, **mkw):
    from engine.config import RunConfig

    return RunConfig.from_dict({"model": {"name_or_path": str(model), **(mdl or {})},
                                "method": {"name": method, **mkw}, "train": train or {},
                                "data": data or {}})


# ---- CPU: counts ---------------------------------------------------------------------------------

PUBLISHED_TOTALS = {
    "llama-3-8b": 8_030_261_248, "qwen2.5-0.5b": 494_032_768, "mistral-7b-v0.1": 7_241_732_096,
    "gemma-2-2b": 2_614_341_888, "phi-3-mini-4k": 3_821_079_552, "smollm2-135m": 134_515_008,
    "llama-3.2-3b": 3_212_749_824,
}


def check_counts() -> list[tuple]:
    from engine.estimate.counts import count_params

    rows = []
    for name, want in PUBLISHED_TOTALS.items():
        got = count_params(run_cfg(CONFIGS / name, r=16))
        rows.append((name, want, got["total_params"], got["trainable_params"],
                     "exact" if got["total_params"] == want else f"off by {got['total_params'] - want:+,}"))
    return rows


# ---- CPU: the activation term against measured saved tensors -------------------------------------

def measure_activations(model_dir, method, batch, seq, packing, dtype_name="float32", quant=False, **mkw):
    """(predicted, measured) saved-tensor bytes of one training-mode forward (with the loss)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.estimate.activations import Shape, fit_activation_model
    from engine.estimate.trace import trace_model
    from engine.methods import apply_method, effective_quantization, get_method
    from engine.models.arch import load_arch

    dtype = getattr(torch, dtype_name)
    cfg = run_cfg(model_dir, method, train={"packing": packing}, **mkw)
    spec = get_method(method)
    arch = load_arch(cfg.model)
    packed = packing and spec.can_pack
    am = fit_activation_model(arch, cfg, dtype=dtype, attn=None, quantized=quant, packing=packed,
                              padded=not packed)
    s = Shape(arch.hidden, arch.intermediate, arch.heads, arch.kv_heads, arch.head_dim, arch.vocab, arch.layers)
    virtual = spec.virtual_tokens(cfg.method)
    p = am.predict(s, batch, seq, virtual)
    predicted = p["layers"] + p["outside"] + p["logits_saved"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir)), dtype=dtype)
    if quant:
        from engine.models.quant import quantize_in_place

        quantize_in_place(model, effective_quantization(cfg), cfg.model.double_quant, dtype)
    model = apply_method(model, cfg)
    model.train()
    real = trace_model(model, arch.vocab, batch, seq, packing=packed, padded=not packed,
                       prompt_based=spec.prompt_based, virtual=virtual)
    del model
    gc.collect()
    return predicted, real.total_bytes


def check_activations(tiny_dir) -> list[tuple]:
    demo = CONFIGS / "smollm2-135m"
    cases = [
        ("tiny", tiny_dir, "lora", 3, 40, True, {}),
        ("tiny", tiny_dir, "dora", 3, 40, True, {}),
        ("tiny", tiny_dir, "ia3", 3, 40, True, {}),
        ("tiny", tiny_dir, "qlora", 3, 40, True, {"quant": True}),
        ("tiny", tiny_dir, "prompt_tuning", 3, 40, False, {}),
        ("tiny", tiny_dir, "prefix_tuning", 3, 40, False, {}),
        ("demo (SmolLM2-135M)", demo, "lora", 2, 64, True, {}),
        ("demo (SmolLM2-135M)", demo, "lora", 2, 64, False, {}),
        ("demo (SmolLM2-135M)", demo, "dora", 2, 64, True, {}),
        ("demo (SmolLM2-135M)", demo, "prompt_tuning", 2, 64, False, {}),
        ("demo (SmolLM2-135M)", demo, "prefix_tuning", 2, 64, False, {}),
        ("demo (SmolLM2-135M)", demo, "lora", 2, 64, True, {"dtype_name": "bfloat16"}),
    ]
    rows = []
    for label, path, method, b, t, packing, kw in cases:
        pred, real = measure_activations(path, method, b, t, packing, **kw)
        rows.append((label, method, f"{b}×{t}", "packed" if packing else "padded", kw.get("dtype_name", "float32"),
                     real, pred, (pred - real) / real))
        print(f"  {label:20s} {method:14s} {b}x{t} {rows[-1][3]:6s} measured {real:>12,} "
              f"estimated {int(pred):>12,}  {rows[-1][-1]:+.2%}", flush=True)
    return rows


# ---- published measurements -----------------------------------------------------------------------

# Each: (source, what, run config for our estimator, autocast, published figure in bytes, figure kind)
PEFT_URL = "https://github.com/huggingface/peft/tree/main/method_comparison/MetaMathQA/results"
TT_URL = "https://github.com/pytorch/torchtune/blob/main/README.md"


def published_cases():
    l32 = CONFIGS / "llama-3.2-3b"
    l8 = CONFIGS / "llama-3-8b"     # Llama 3.1 8B has the same shapes as Llama 3 8B
    # peft's benchmark uses the model's own loss; torchtune's a chunked one, like engine/loss.py.
    peft_train = {"batch_size": 4, "packing": False, "optimizer": "adamw_torch", "weight_decay": 0.1,
                  "loss_impl": "standard"}
    peft_data = {"max_length": 768}
    tt_train = {"batch_size": 2, "packing": True, "gradient_checkpointing": True, "loss_impl": "chunked"}
    tt_data = {"max_length": 2048}
    lora_tt = dict(r=8, alpha=16, dropout=0.0,
                   target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return [
        ("peft MetaMathQA: lora--llama-3.2-3B-rank32", "LoRA r32 q,v; bf16, no AMP, batch 4, ≤768 tok",
         run_cfg(l32, "lora", peft_train, peft_data, {"dtype": "bfloat16"}, r=32, alpha=64, dropout=0.0,
                 target_modules=["q_proj", "v_proj"]), False, 22_273_851_392, 17_710_763_212),
        ("peft MetaMathQA: lora--llama-3.2-3B-rank32-dora", "DoRA r32 q,v; same setup",
         run_cfg(l32, "dora", peft_train, peft_data, {"dtype": "bfloat16"}, r=32, alpha=64, dropout=0.0,
                 target_modules=["q_proj", "v_proj"]), False, 24_540_872_704, 22_171_090_944),
        ("peft MetaMathQA: prompt_tuning--llama-3.2-3B-default", "prompt tuning, 200 virtual tokens",
         run_cfg(l32, "prompt_tuning", peft_train, peft_data, {"dtype": "bfloat16"}, num_virtual_tokens=200,
                 init="random"), False, 24_379_392_000, 20_669_781_770),
        ("peft MetaMathQA: full-finetuning--llama-3.2-3B-lr_0.00001", "full fine-tuning, bf16 AdamW",
         run_cfg(l32, "full", {**peft_train, "weight_decay": 0.0}, peft_data, {"dtype": "bfloat16"}), False,
         37_241_225_216, 33_573_390_254),
        ("torchtune README: Llama 3.1 8B LoRA, 1x A6000", "LoRA r8 q,v,o+MLP; batch 2 packed 2048; "
         "checkpointing (config default)", run_cfg(l8, "lora", tt_train, tt_data, {"dtype": "bfloat16"}, **lora_tt),
         None, int(30.3 * GiB), None),
        ("torchtune README: Llama 3.1 8B LoRA, 1x 4090", "same, 4090 row (optimisations not stated)",
         run_cfg(l8, "lora", tt_train, tt_data, {"dtype": "bfloat16"}, **lora_tt), None, int(16.2 * GiB), None),
        ("torchtune README: Llama 3.1 8B QLoRA, 1x 4090", "QLoRA r8 q,k,v,o+MLP; batch 2 packed 2048",
         run_cfg(l8, "qlora", tt_train, tt_data, {"dtype": "bfloat16"},
                 **{**lora_tt, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                  "up_proj", "down_proj"]}), None, int(7.4 * GiB), None),
    ]


def check_published() -> list[tuple]:
    from engine.estimate import estimate

    rows = []
    for source, what, cfg, autocast, peak, p99 in published_cases():
        e = estimate(cfg, None, autocast=autocast)
        rows.append((source, what, e.peak_allocated, e.peak_reserved, peak, p99))
        print(f"  {source}: estimate reserved {e.peak_reserved / GiB:.2f} GiB, published "
              f"{peak / GiB:.2f} GiB" + (f" (99th pct {p99 / GiB:.2f})" if p99 else ""), flush=True)
    return rows


# ---- GPU grid --------------------------------------------------------------------------------------

def grid() -> list[dict]:
    """≥24 configurations: methods × lengths × batch sizes × checkpointing × quantization × optimizers."""
    qwen, smol = CONFIGS / "qwen2.5-0.5b", CONFIGS / "smollm2-135m"
    g = []
    for model in (smol, qwen):
        for method, kw in (("lora", {}), ("qlora", {}), ("dora", {}), ("ia3", {}),
                           ("prompt_tuning", {"init": "random"}), ("prefix_tuning", {})):
            for seq, batch, gcp in ((512, 4, False), (1024, 2, True)):
                g.append(dict(model=model, method=method, mkw=kw, seq=seq, batch=batch, gc=gcp,
                              optimizer="adamw_torch"))
        for opt in ("adamw_8bit", "paged_adamw_8bit", "adafactor"):
            g.append(dict(model=model, method="lora", mkw={}, seq=1024, batch=4, gc=False, optimizer=opt))
        g.append(dict(model=model, method="full", mkw={}, seq=512, batch=2, gc=True, optimizer="adamw_8bit"))
        g.append(dict(model=model, method="lora", mkw={}, seq=2048, batch=8, gc=False, optimizer="adamw_torch"))
    return g


def nvml_used() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0))
        return int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
    except Exception:
        import subprocess

        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                  "-i", "0"], capture_output=True, text=True, timeout=20).stdout
            return int(out.strip().splitlines()[0]) * (1 << 20)
        except Exception:
            return None


def measure_gpu(case: dict, steps: int = 4) -> dict:
    """Train ``steps`` optimizer steps the way engine.training does and read the peaks."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.estimate.timing import _optimizer
    from engine.methods import effective_quantization, get_method, prepare_for_training
    from engine.models import load_model

    cfg = run_cfg(case["model"], case["method"],
                  train={"batch_size": case["batch"], "gradient_checkpointing": case["gc"],
                         "optimizer": case["optimizer"], "packing": True},
                  data={"max_length": case["seq"]}, mdl={"dtype": "bfloat16"}, **case["mkw"])
    quant = effective_quantization(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        # Random weights saved once so that loading (and 4-bit quantization) is the real path.
        torch.manual_seed(0)
        hf = AutoConfig.from_pretrained(str(case["model"]))
        AutoModelForCausalLM.from_config(hf, dtype=torch.bfloat16).save_pretrained(tmp)
        cfg.model.name_or_path = tmp
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()
        model = load_model(cfg.model, quantization=quant or None, device="cuda")
        model = prepare_for_training(model, cfg, quantized=bool(quant))
        opt = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        B, L = cfg.train.batch_size, cfg.data.max_length
        vocab = model.get_input_embeddings().weight.shape[0]
        if not get_method(cfg.method.name).can_pack:  # virtual tokens: padded rows, not one packed row
            ids = torch.randint(0, vocab, (B, L), device="cuda")
            batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
        else:
            ids = torch.randint(0, vocab, (1, B * L), device="cuda")
            batch = {"input_ids": ids, "labels": ids.clone(),
                     "position_ids": (torch.arange(B * L, device="cuda") % L)[None]}
        from engine.training.loss import make_loss

        fast, _note = make_loss(model, cfg.train.loss_impl, cfg.train.loss_chunk_tokens, "cuda")
        for _ in range(steps):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                # The trainer's loss: engine/loss.py's chunked/Liger loss where it applies.
                loss = fast(model, batch, None) if fast is not None else model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out = {"allocated": torch.cuda.max_memory_allocated() - base_alloc,
               "reserved": torch.cuda.max_memory_reserved(), "nvml": nvml_used()}
        del model, opt, batch, loss
        # Estimated while the model folder still exists: the estimator reads its config.json.
        from engine.estimate import estimate

        out["estimate"] = estimate(cfg, "detect")
        gc.collect()
        torch.cuda.empty_cache()
    out["cfg"] = cfg
    return out


def run_grid(cases: list[dict] | None = None) -> list[tuple]:
    import torch


    rows = []
    for case in (grid() if cases is None else cases):
        label = (f"{case['model'].name} {case['method']} b{case['batch']}×{case['seq']} "
                 f"gc={'on' if case['gc'] else 'off'} {case['optimizer']}")
        try:
            m = measure_gpu(case)
            e = m["estimate"]
        except Exception as exc:  # one failing configuration must not hide the others
            print(f"  {label}: FAILED {type(exc).__name__}: {exc}", flush=True)
            rows.append((label, None, None, None, None, None, str(exc)[:80]))
            torch.cuda.empty_cache()
            continue
        err = (e.peak_reserved - m["reserved"]) / m["reserved"]
        rows.append((label, e.peak_allocated, m["allocated"], e.peak_reserved, m["reserved"], err,
                     f"NVML {m['nvml'] / GiB:.2f} GiB, est. device {e.device_total / GiB:.2f}" if m["nvml"] else ""))
        print(f"  {label}: reserved est {e.peak_reserved / GiB:.2f} meas {m['reserved'] / GiB:.2f} GiB "
              f"({err:+.1%})", flush=True)
    return rows


# ---- report ----------------------------------------------------------------------------------------

def g(b) -> str:
    return "–" if b is None else f"{b / GiB:.2f}"


def tables(counts, acts, published, grid_rows, device) -> dict[str, str]:
    out = {}
    lines = ["| config.json | published total | ours | LoRA r=16 trainable | |", "|---|---:|---:|---:|---|"]
    lines += [f"| {n} | {w:,} | {got:,} | {tr:,} | {ok} |" for n, w, got, tr, ok in counts]
    out["COUNTS"] = "\n".join(lines)
    lines = ["| model | method | batch×seq | layout | dtype | measured saved bytes | estimated | error |",
             "|---|---|---|---|---|---:|---:|---:|"]
    lines += [f"| {a} | {m} | {bs} | {lay} | {dt} | {r:,} | {int(p):,} | {e:+.2%} |"
              for a, m, bs, lay, dt, r, p, e in acts]
    out["ACTIVATIONS"] = "\n".join(lines)
    lines = ["| published run | configuration | our peak allocated | our peak reserved | published peak | "
             "published 99th pct (training steps) |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {s} | {w} | {g(a)} GiB | {g(r)} GiB | {g(p)} GiB | {g(q) + ' GiB' if q else '–'} |"
              for s, w, a, r, p, q in published]
    out["PUBLISHED"] = "\n".join(lines)
    if grid_rows:
        lines = [f"Device: {device}", "", "| configuration | est. allocated | measured allocated | "
                 "est. reserved | measured reserved | error (reserved) | notes |",
                 "|---|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {lab} | {g(ea)} | {g(ma)} | {g(er)} | {g(mr)} | "
                  f"{'–' if err is None else f'{err:+.1%}'} | {note} |" for lab, ea, ma, er, mr, err, note in grid_rows]
        out["GPU"] = "\n".join(lines)
    return out


def write_doc(parts: dict[str, str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    for key, body in parts.items():
        pat = re.compile(rf"(<!-- {key}:BEGIN -->\n).*?(\n<!-- {key}:END -->)", re.S)
        text = pat.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    DOC.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the tables in docs/estimator-accuracy.md")
    ap.add_argument("--skip-gpu", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--grid-slice", default=None, metavar="START:STOP[:STEP]",
                    help="run only these configurations of the GPU grid (a Python slice of its order), "
                         "e.g. 0:8, or ::4 for every fourth (both models, several methods)")
    ap.add_argument("--json", default=None, help="also write the GPU grid's rows to this file")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    t0 = time.time()
    parts = {}
    counts = acts = published = None
    if not args.skip_cpu:
        from engine.testing import make_tiny_model

        print("counts:", flush=True)
        counts = check_counts()
        for row in counts:
            print(f"  {row[0]}: {row[2]:,} ({row[4]}), LoRA r=16 trainable {row[3]:,}")
        print("activations (saved-tensor bytes of one training forward):", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            acts = check_activations(make_tiny_model(Path(tmp) / "tiny"))
        print("published measurements:", flush=True)
        published = check_published()
    grid_rows, device = None, None
    if torch.cuda.is_available() and not args.skip_gpu:
        device = torch.cuda.get_device_name()
        print(f"GPU grid on {device}:", flush=True)
        cases = grid()
        if args.grid_slice:
            parts = [int(x) if x.strip() else None for x in args.grid_slice.split(":")]
            cases = cases[slice(*parts)] if len(parts) > 1 else cases[parts[0]:parts[0] + 1]
        grid_rows = run_grid(cases)
        if args.json:
            import json

            keys = ("configuration", "est_allocated", "measured_allocated", "est_reserved", "measured_reserved",
                    "error_reserved", "notes")
            Path(args.json).write_text(json.dumps({"device": device, "rows": [dict(zip(keys, r)) for r in grid_rows]},
                                                  indent=1))
    elif not args.skip_gpu:
        print("no CUDA device: the GPU grid was not run", flush=True)
    if args.write:
        parts = tables(counts or [], acts or [], published or [], grid_rows, device)
        if counts is None:
            parts = {k: v for k, v in parts.items() if k == "GPU"}
        write_doc(parts)
        print(f"wrote {DOC.relative_to(ROOT)}")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
