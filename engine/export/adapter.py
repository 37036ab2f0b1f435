"""Export a run's adapter: the standard peft folder plus a README model card."""

from __future__ import annotations

from pathlib import Path

from engine.export.atomic import ExportError, atomic_dir
from engine.export.loading import copy_tokenizer_files, save_base_tokenizer, saved_config
from engine.export.result import ExportResult, Progress, no_progress
from engine.export.runinfo import RunInfo, load_run

# What a full fine-tune's checkpoint holds besides the model: the trainer's state, not for shipping.
_TRAINER_FILES = ("trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")


def _copy_model_folder(src: Path, dst: Path) -> None:
    """A full fine-tune's export is its whole model: weights, configs and tokenizer files."""
    import shutil

    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in _TRAINER_FILES and not f.name.startswith("rng_state"):
            shutil.copy2(f, dst / f.name)


def _copy_adapter_weights(src: Path, dst: Path) -> None:
    import shutil

    from engine.methods.storage import is_model_folder

    if not (src / "adapter_config.json").exists() and is_model_folder(src):
        _copy_model_folder(src, dst)
        return
    shutil.copy2(src / "adapter_config.json", dst / "adapter_config.json")
    st = src / "adapter_model.safetensors"
    if st.exists():
        shutil.copy2(st, dst / st.name)
        return
    bin_ = src / "adapter_model.bin"
    if not bin_.exists():
        raise ExportError(f"{src} has adapter_config.json but no adapter weights (adapter_model.safetensors).")
    # An adapter saved by an old peft as a pickle: re-save it as safetensors (DESIGN §2.5).
    import torch
    from safetensors.torch import save_file

    state = torch.load(bin_, map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst / "adapter_model.safetensors"))


def write_adapter_folder(info: RunInfo, src: Path, dst: Path) -> str | None:
    """Fill ``dst`` with the adapter from ``src`` and a tokenizer; returns a note if no tokenizer."""
    _copy_adapter_weights(src, dst)
    if copy_tokenizer_files(src, dst):
        return None
    if info.adapter_dir is not None and copy_tokenizer_files(info.adapter_dir, dst):
        return None
    from engine.models import ModelError

    try:
        save_base_tokenizer(info, dst)  # the base's own: no pad token or padding side of ours
    except (ModelError, OSError, ValueError) as e:
        return f"No tokenizer was saved with the adapter (the base's could not be loaded: {e})."
    return None


def export_adapter(run: str | Path | RunInfo, out: str | Path, which: str | None = None,
                   overwrite: bool = False, progress: Progress = no_progress) -> ExportResult:
    """Copy the adapter (``final`` or a checkpoint) into ``out`` with a README model card."""
    from engine.modelcard import render_run_card

    info = run if isinstance(run, RunInfo) else load_run(run)
    src = info.adapter(which)
    out = Path(out).expanduser()
    progress("Exporting the adapter", 0, 2)
    with atomic_dir(out, overwrite) as tmp:
        note = write_adapter_folder(info, src, tmp)
        progress("Exporting the adapter", 1, 2)
        label = which or "final"
        card = render_run_card(info, "adapter", out.name, label, {"adapter_config": saved_config(src)})
        (tmp / "README.md").write_text(card, encoding="utf-8")
    progress("Exporting the adapter", 2, 2)
    return ExportResult("adapter", out.absolute(), note=note, details={"source": str(src)})
