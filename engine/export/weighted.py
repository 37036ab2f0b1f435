"""Weighted merge of several LoRA adapters into one, with peft's ``add_weighted_adapter``.

The result is a standard adapter folder (the merged adapter is saved under peft's ``default``
name, so it lands at the folder's root). Combinations:

* ``linear``: weights scale A and B (by √w each); needs equal ranks. Weights 1,0 reproduce the
  first adapter; otherwise it is a rough approximation (cross terms).
* ``cat``: concatenates the adapters; the delta is exactly Σ wᵢ·ΔWᵢ; rank = Σ ranks.
* ``svd``: Σ wᵢ·ΔWᵢ, truncated back to a rank by SVD.
* ``ties``, ``dare_linear``, ``dare_ties``: task-arithmetic merges that prune to ``density``
  (TIES keeps the largest entries and elects signs; DARE drops entries at random and rescales).
"""

from __future__ import annotations

from pathlib import Path

from engine.export.atomic import ExportError, atomic_dir
from engine.export.loading import copy_tokenizer_files, read_adapter_config
from engine.export.result import ExportResult, Progress, no_progress

COMBINATIONS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties")
DENSITY_COMBINATIONS = ("ties", "dare_linear", "dare_ties")
DEFAULT_DENSITY = 0.5


def resolve_adapter_path(path: str | Path) -> Path:
    """A run folder means its final adapter; an adapter folder is used as is."""
    from engine.export.runinfo import load_run

    p = Path(path).expanduser()
    if (p / "adapter_config.json").exists():
        return p
    return load_run(p).adapter("final")


def parse_weights(text: str | list, n: int) -> list[float]:
    items = text if isinstance(text, (list, tuple)) else [s for s in str(text).replace(" ", "").split(",") if s]
    try:
        weights = [float(w) for w in items]
    except ValueError:
        raise ExportError(f"Weights must be numbers separated by commas, e.g. 0.7,0.3 (got {text!r}).") from None
    if len(weights) != n:
        raise ExportError(f"Give one weight per adapter: {n} adapters but {len(weights)} weights.")
    return weights


def _check_inputs(paths: list[Path], weights: list[float], method: str, density: float | None):
    if len(paths) < 2:
        raise ExportError("A weighted merge needs at least two adapters.")
    if method not in COMBINATIONS:
        raise ExportError(f"Unknown combination {method!r}; choose one of {', '.join(COMBINATIONS)}.")
    if len(weights) != len(paths):
        raise ExportError(f"Give one weight per adapter: {len(paths)} adapters but {len(weights)} weights.")
    if density is not None and not (0.0 < density <= 1.0):
        raise ExportError(f"Density must be in (0, 1]: the fraction of each adapter's entries kept (got {density}).")
    configs = [read_adapter_config(p) for p in paths]
    for p, c in zip(paths, configs):
        if str(c.get("peft_type", "")).upper() != "LORA":
            kind = c.get("peft_type") or c.get("studio_method") or "unknown"
            raise ExportError(f"{p} is a {kind} adapter; only LoRA adapters can be merged with weights.")
        if c.get("use_dora"):
            raise ExportError(f"{p} is a DoRA adapter; peft's weighted merge handles plain LoRA only "
                              "(DoRA's magnitude vectors cannot be combined this way).")
    ranks = [c.get("r") for c in configs]
    if method in ("linear", "ties", "dare_linear", "dare_ties") and len(set(ranks)) > 1:
        raise ExportError(f"The {method} combination needs adapters of equal rank (got r = "
                          f"{', '.join(map(str, ranks))}); use cat or svd instead.")
    return configs


def _common_base(paths: list[Path], configs: list[dict], base: str | None) -> str:
    if base:
        return base
    bases = [c.get("base_model_name_or_path") for c in configs]
    if not bases[0]:
        raise ExportError(f"{paths[0]} does not name its base model; pass --base.")
    norm = {str(Path(b).expanduser().resolve()) if b and Path(b).expanduser().exists() else b for b in bases}
    if len(norm) > 1:
        raise ExportError("The adapters were trained on different base models ("
                          + "; ".join(f"{p.name}: {b}" for p, b in zip(paths, bases))
                          + "). Merge only adapters of the same base, or pass --base to insist.")
    return bases[0]


def merge_adapters(adapters: list[str | Path], weights: list[float] | str, out: str | Path,
                   method: str = "linear", density: float | None = None, base: str | None = None,
                   svd_rank: int | None = None, seed: int = 0, overwrite: bool = False,
                   progress: Progress = no_progress) -> ExportResult:
    """Combine LoRA adapters into one standard adapter folder at ``out``."""
    import torch
    from peft import PeftModel

    from engine.config import ModelConfig
    from engine.modelcard import render_weighted_card
    from engine.models import load_model

    paths = [resolve_adapter_path(a) for a in adapters]
    weights = parse_weights(weights, len(paths))
    note = None
    if method in DENSITY_COMBINATIONS and density is None:
        density = DEFAULT_DENSITY
    elif method not in DENSITY_COMBINATIONS and density is not None:
        note = f"Density is used only by {', '.join(DENSITY_COMBINATIONS)}; ignored for {method}."
        density = None
    configs = _check_inputs(paths, weights, method, density)
    base_name = _common_base(paths, configs, base)
    out = Path(out).expanduser()
    with atomic_dir(out, overwrite) as tmp:
        progress("Loading the base model", None, None)
        # float32 on the CPU: the combination arithmetic (SVD, pruning) is done once, exactly.
        model = load_model(ModelConfig(name_or_path=base_name, dtype="float32"), quantization=None, device="cpu")
        names = [f"in{i}" for i in range(len(paths))]
        progress("Loading the adapters", 0, len(paths))
        peft_model = PeftModel.from_pretrained(model, str(paths[0]), adapter_name=names[0])
        for i, (name, p) in enumerate(zip(names[1:], paths[1:]), start=1):
            progress("Loading the adapters", i, len(paths))
            try:
                peft_model.load_adapter(str(p), adapter_name=name)
            except (ValueError, RuntimeError, KeyError) as e:
                raise ExportError(f"{p} does not fit the base model {base_name}: {e}") from None
        progress("Loading the adapters", len(paths), len(paths))
        progress(f"Combining ({method})", None, None)
        torch.manual_seed(seed)  # DARE drops entries at random: make the result reproducible
        kwargs = {"density": density} if density is not None else {}
        if svd_rank and method == "svd":
            kwargs["svd_rank"] = svd_rank
        try:
            # Saved under peft's "default" name so the adapter lands at the folder's root.
            peft_model.add_weighted_adapter(names, weights, adapter_name="default", combination_type=method,
                                            **kwargs)
        except (ValueError, TypeError) as e:
            raise ExportError(f"peft could not combine these adapters with {method}: {e}") from None
        peft_model.set_adapter("default")
        for name in names:
            peft_model.delete_adapter(name)
        progress("Saving the merged adapter", None, None)
        peft_model.save_pretrained(tmp, safe_serialization=True)
        copy_tokenizer_files(paths[0], tmp)
        (tmp / "README.md").write_text(render_weighted_card(paths, weights, method, density, base_name, out.name),
                                       encoding="utf-8")
    return ExportResult("weighted", out.absolute(), note=note,
                        details={"sources": [str(p) for p in paths], "weights": weights, "method": method,
                                 "density": density, "base": base_name})
