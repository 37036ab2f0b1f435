"""Merge a run's adapter into its base: a full safetensors model folder (GGUF: gguf_export).

The base is always loaded fresh in full precision (the chosen dtype), never the 4-bit weights a
QLoRA run trained on: merging into quantized weights rounds the adapter's update away
(DESIGN §4). Prompt-based methods have no weight update to merge; asking to merge one exports
its adapter instead, with a note that says why.
"""

from __future__ import annotations

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
    """(merged transformers model, tokenizer, adapter path, dtype name) in memory.

    ``which="base"`` gives the base model itself (adapter path None).
    """
    from engine.config import ConfigError
    from engine.export.loading import native_dtype
    from engine.export.runinfo import is_base
    from engine.methods.storage import load_trained, merge_trained

    dtype = normalize_dtype(dtype)
    if dtype == "auto":
        dtype = native_dtype(info)
    if is_base(which):  # the base model as it is: what a GGUF LoRA adapter is applied to
        progress(f"Loading the base model ({dtype})", None, None)
        base = load_base(info, dtype, quantized=False, device=device)
        base.config.use_cache = True
        return base, load_tokenizer_for(info), None, dtype
    if not info.gives_full_model:
        raise ExportError(cannot_merge_message(info))
    src = info.adapter(which)
    spec = info.saved_method(src)
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
    from engine.export.runinfo import is_base
    from engine.modelcard import render_run_card

    info = run if isinstance(run, RunInfo) else load_run(run)
    if not info.gives_full_model and not is_base(which):
        res = export_adapter(info, out, which, overwrite, progress)
        res.note = cannot_merge_message(info) + " Exported the adapter only."
        return res
    out = Path(out).expanduser()
    with atomic_dir(out, overwrite) as tmp:
        merged, tokenizer, src, dtype = merged_model(info, which, dtype, progress)
        _ensure_generation_config(merged, tokenizer)
        progress("Saving safetensors shards", None, None)
        merged.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
        if src is None or not copy_tokenizer_files(src, tmp):
            save_base_tokenizer(info, tmp)  # the base's own: no pad token or padding side of ours
        if not (tmp / "generation_config.json").exists():
            merged.generation_config.save_pretrained(tmp)
        (tmp / "README.md").write_text(
            render_run_card(info, "merged", out.name, which or "final",
                            {"dtype": dtype, "adapter_config": saved_config(src) if src else {}}),
            encoding="utf-8")
        shards = sorted(p.name for p in tmp.glob("*.safetensors"))
    return ExportResult("merged", out.absolute(), details={"dtype": dtype, "shards": shards,
                                                                "source": str(src) if src else "base"})
