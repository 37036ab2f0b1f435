"""Merge a run's adapter into its base: a full safetensors model folder, or a GGUF file.

The base is always loaded fresh in full precision (the chosen dtype), never the 4-bit weights a
QLoRA run trained on: merging into quantized weights rounds the adapter's update away
(DESIGN §4). Prompt-based methods have no weight update to merge; asking to merge one exports
its adapter instead, with a note that says why.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.export.adapter import export_adapter
from engine.export.atomic import ExportError, atomic_dir
from engine.export.loading import (
    copy_tokenizer_files,
    load_base,
    load_tokenizer_for,
    normalize_dtype,
    save_base_tokenizer,
    saved_config,
)
from engine.export.result import ExportResult, Progress, no_progress
from engine.export.runinfo import RunInfo, load_run

DEFAULT_SHARD_SIZE = "2GB"


def cannot_merge_message(info: RunInfo) -> str:
    spec = info.method
    reason = spec.merge_note or "this method does not change the base weights"
    return f"{spec.title} cannot be merged into the base model: {reason}."


def merged_model(info: RunInfo, which: str | None = None, dtype: str = "auto",
                 progress: Progress = no_progress, device: str = "cpu"):
    """(merged transformers model, tokenizer, adapter path, dtype name) in memory."""
    from engine.config import ConfigError
    from engine.export.loading import native_dtype
    from engine.methods.storage import load_trained, merge_trained

    if not info.gives_full_model:
        raise ExportError(cannot_merge_message(info))
    src = info.adapter(which)
    spec = info.saved_method(src)
    dtype = normalize_dtype(dtype)
    if dtype == "auto":
        dtype = native_dtype(info)
    if spec.saves_full_model:
        from engine.methods.storage import load_model_folder

        progress(f"Loading the fine-tuned model ({dtype})", None, None)
        merged = load_model_folder(src, dtype, device)
    else:
        progress(f"Loading the base model ({dtype})", None, None)
        base = load_base(info, dtype, quantized=False, device=device)
        progress("Applying the adapter", None, None)
        try:
            model = load_trained(base, src)
        except ConfigError as e:
            raise ExportError(f"The adapter in {src} does not fit the base model "
                              f"{info.config.model.name_or_path}: {e}") from None
        except (ValueError, RuntimeError, KeyError) as e:
            raise ExportError(f"The adapter in {src} does not fit the base model "
                              f"{info.config.model.name_or_path}: {e}") from None
        progress("Merging the adapter into the weights", None, None)
        merged = merge_trained(model, spec.name)
    # The merged folder is an ordinary model: no quantization marker, KV cache back on.
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.hf_quantizer = None
    merged.config.use_cache = True
    merged.eval()
    tokenizer = load_tokenizer_for(info, src)
    return merged, tokenizer, src, dtype


def _ensure_generation_config(model, tokenizer) -> None:
    from transformers import GenerationConfig

    gc = getattr(model, "generation_config", None)
    if gc is None:
        gc = GenerationConfig.from_model_config(model.config)
        model.generation_config = gc
    if gc.eos_token_id is None and tokenizer.eos_token_id is not None:
        gc.eos_token_id = tokenizer.eos_token_id
    if gc.pad_token_id is None and tokenizer.pad_token_id is not None:
        gc.pad_token_id = tokenizer.pad_token_id


def export_merged(run: str | Path | RunInfo, out: str | Path, which: str | None = None, dtype: str = "auto",
                  max_shard_size: str | int = DEFAULT_SHARD_SIZE, overwrite: bool = False,
                  progress: Progress = no_progress) -> ExportResult:
    """A full model folder (safetensors, sharded above ``max_shard_size``, tokenizer, generation
    config, README) that plain ``AutoModelForCausalLM.from_pretrained`` loads."""
    from engine.modelcard import render_run_card

    info = run if isinstance(run, RunInfo) else load_run(run)
    if not info.gives_full_model:
        res = export_adapter(info, out, which, overwrite, progress)
        res.note = cannot_merge_message(info) + " Exported the adapter only."
        return res
    out = Path(out).expanduser()
    with atomic_dir(out, overwrite) as tmp:
        merged, tokenizer, src, dtype = merged_model(info, which, dtype, progress)
        _ensure_generation_config(merged, tokenizer)
        progress("Saving safetensors shards", None, None)
        merged.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
        if not copy_tokenizer_files(src, tmp):
            save_base_tokenizer(info, tmp)  # the base's own: no pad token or padding side of ours
        if not (tmp / "generation_config.json").exists():
            merged.generation_config.save_pretrained(tmp)
        (tmp / "README.md").write_text(
            render_run_card(info, "merged", out.name, which or "final",
                            {"dtype": dtype, "adapter_config": saved_config(src)}), encoding="utf-8")
        shards = sorted(p.name for p in tmp.glob("*.safetensors"))
    return ExportResult("merged", out.absolute(), details={"dtype": dtype, "shards": shards, "source": str(src)})


def _gguf_filename(info: RunInfo, qtype: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", info.name).strip("-") or "model"
    return f"{stem}.{qtype}.gguf"


def export_gguf(run: str | Path | RunInfo, out: str | Path, qtype: str = "q8_0", which: str | None = None,
                verify: bool = False, overwrite: bool = False, progress: Progress = no_progress) -> ExportResult:
    """Merge in float32 and write ``out/<run>.<qtype>.gguf`` (+ README). ``verify`` loads the
    file back with transformers' GGUF loader and records the max |Δlogit| on a sample prompt."""
    from engine.export.to_gguf import GGUF_TYPES, check_gguf_support, gguf_logits_check, write_gguf
    from engine.modelcard import render_run_card
    from engine.models import resolve_model_config

    info = run if isinstance(run, RunInfo) else load_run(run)
    qtype = qtype.lower()
    if qtype not in GGUF_TYPES:
        raise ExportError(f"GGUF type {qtype!r} is not supported; choose one of {', '.join(GGUF_TYPES)}.")
    if not info.gives_full_model:
        raise ExportError(cannot_merge_message(info) + " A GGUF file needs merged weights; export the adapter "
                          "instead.")
    # Fail on an unsupported architecture before loading any weights.
    check_gguf_support(resolve_model_config(info.config.model.name_or_path, info.config.model.trust_remote_code,
                                            info.config.model.offline))
    out = Path(out).expanduser()
    fname = _gguf_filename(info, qtype)
    details: dict = {"gguf_type": qtype, "gguf_file": fname, "dtype": "float32"}
    with atomic_dir(out, overwrite) as tmp:
        # float32 merge: the GGUF conversion then rounds once, to the requested type.
        merged, tokenizer, src, _ = merged_model(info, which, "float32", progress)
        # The demo model is SmolLM2, whose tokenizer splits digits one by one; its converted
        # tokenizer.json no longer says so, but llama.cpp must know ("smollm").
        pre = "smollm" if info.config.model.name_or_path == "demo" else None
        write_gguf(merged, tokenizer, tmp / fname, qtype, name=info.name, tokenizer_pre=pre, progress=progress)
        if verify:
            progress("Verifying: loading the GGUF back", None, None)
            ids = tokenizer("The quick brown fox jumps over the lazy dog. 1234", return_tensors="pt")["input_ids"]
            details["max_abs_logit_diff"] = gguf_logits_check(merged, tmp / fname, ids)
        details["source"] = str(src)
        card = render_run_card(info, "gguf", out.name, which or "final",
                               {**details, "adapter_config": saved_config(src)})
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return ExportResult("gguf", out.absolute(), details=details)
