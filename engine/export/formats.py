"""The export-format registry: one list that the CLI and the studio read instead of copying choices.

Each ``ExportFormat`` declares its name, title, what it needs (an adapter, weights that fold into
the base, a plain LoRA), its options (GGUF types or dtypes, with which need llama-cpp-python),
a size estimate and the function that runs it::

    for fmt in FORMATS.values():                       # menus
        fmt.name, fmt.title, fmt.option_label, fmt.options
    format_choices(info)        → [FormatChoice(format, available, reason, options=[OptionChoice…])]
    estimate_sizes(info, which) → [SizeEstimate(format, option, bytes, exact, available, reason)]
    get_format("gguf").run(info, out, option="q4_k_m", which="final", overwrite=False,
                           progress=cb, verify=True)  → ExportResult

Adding a format: write its run and estimate functions and ``register(ExportFormat(...))``; the
registry refuses a duplicate name. The weighted merge of several adapters is not a format of
one run (``engine.export.weighted``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.export.atomic import ExportError
from engine.export.runinfo import RunInfo, is_base, load_run
from engine.export.sizes import SizeEstimate


@dataclass(frozen=True)
class ExportFormat:
    """One kind of export."""

    name: str                          # CLI value and registry key
    title: str                         # menu text
    description: str                   # one or two sentences: what the files are and who runs them
    needs: tuple[str, ...]             # "adapter", "mergeable" (merges into the base), "lora_adapter" (a plain LoRA adapter)
    option_label: str = ""             # "GGUF type", "dtype"; "" when the format has no option
    options: tuple[str, ...] = ()      # option values, in menu order
    default_option: str | None = None
    outputs: str = ""                  # the files written
    run: Callable[..., object] | None = field(default=None, compare=False)
    estimate: Callable[..., list[SizeEstimate]] | None = field(default=None, compare=False)

    def option_needs_llama_cpp(self, option: str | None) -> bool:
        from engine.export.gguf_quant import QUANT_TYPES

        return self.name in ("gguf", "ollama") and option in QUANT_TYPES and QUANT_TYPES[option].needs_llama_cpp


FORMATS: dict[str, ExportFormat] = {}


def register(fmt: ExportFormat) -> ExportFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"export format {fmt.name!r} registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ExportError(f"Unknown export format {name!r}; choose one of {', '.join(FORMATS)}.")
    return FORMATS[name]


@dataclass
class OptionChoice:
    value: str
    description: str
    available: bool
    reason: str = ""


@dataclass
class FormatChoice:
    format: ExportFormat
    available: bool
    reason: str = ""                   # why not, in words the user can act on
    options: list[OptionChoice] = field(default_factory=list)


def _why_not(fmt: ExportFormat, info: RunInfo, which: str | None) -> str:
    from engine.export.merge import cannot_merge_message

    if "mergeable" in fmt.needs and not info.gives_full_model and not is_base(which):
        return cannot_merge_message(info)
    if "lora_adapter" in fmt.needs:
        if is_base(which):
            return "The base model has no adapter."
        from engine.export.gguf_lora import check_lora
        from engine.export.loading import read_adapter_config

        try:
            src = info.adapter(which)
            check_lora(read_adapter_config(src) if (src / "adapter_config.json").exists() else {}, src)
        except ExportError as e:
            return str(e)
    if "adapter" in fmt.needs and is_base(which):
        return "The base model has no adapter to export."
    return ""


def _option_choices(fmt: ExportFormat) -> list[OptionChoice]:
    from engine.export.gguf_quant import INSTALL_HINT, QUANT_TYPES, llama_cpp_available
    from engine.export.loading import MERGE_DTYPES

    have = None
    out = []
    for v in fmt.options:
        if v in QUANT_TYPES and fmt.name in ("gguf", "ollama"):
            q = QUANT_TYPES[v]
            if q.needs_llama_cpp and have is None:
                have = llama_cpp_available()
            ok = not q.needs_llama_cpp or bool(have)
            out.append(OptionChoice(v, q.description, ok, "" if ok else INSTALL_HINT))
        else:
            desc = "the base checkpoint's own dtype" if v == "auto" and v in MERGE_DTYPES else ""
            out.append(OptionChoice(v, desc, True))
    return out


def format_choices(info: RunInfo | str | Path | None = None, which: str | None = None) -> list[FormatChoice]:
    """Every format with whether it can be made for this run (all, when ``info`` is None)."""
    if info is not None and not isinstance(info, RunInfo):
        info = load_run(info)
    out = []
    for fmt in FORMATS.values():
        reason = _why_not(fmt, info, which) if info is not None else ""
        out.append(FormatChoice(fmt, not reason, reason, _option_choices(fmt)))
    return out


def estimate_sizes(info: RunInfo | str | Path, which: str | None = None,
                   formats: list[str] | None = None) -> list[SizeEstimate]:
    """The size of every format and option for this run, without loading any weight."""
    from engine.models import ModelError, resolve_model_config

    if not isinstance(info, RunInfo):
        info = load_run(info)
    try:
        cfg = resolve_model_config(info.config.model.name_or_path, info.config.model.trust_remote_code,
                                   info.config.model.offline)
    except ModelError as e:
        raise ExportError(str(e)) from None
    shapes = None
    out: list[SizeEstimate] = []
    for choice in format_choices(info, which):
        fmt = choice.format
        if formats and fmt.name not in formats:
            continue
        if fmt.estimate is None:
            continue
        if "mergeable" in fmt.needs and shapes is None:
            from engine.export.sizes import meta_shapes

            shapes = meta_shapes(cfg)
        try:
            estimates = fmt.estimate(info, which, cfg, shapes)
        except ExportError as e:
            estimates = [SizeEstimate(fmt.name, None, 0, False, False, str(e))]
        opts = {o.value: o for o in choice.options}
        for e in estimates:
            if not choice.available:
                e.available, e.reason = False, choice.reason
            elif e.option in opts and not opts[e.option].available:
                e.available, e.reason = False, opts[e.option].reason
            out.append(e)
    return out


# ---- the formats ------------------------------------------------------------------------------

def _run_adapter(info, out, option=None, which=None, overwrite=False, progress=None, verify=True):
    from engine.export.adapter import export_adapter
    from engine.export.result import no_progress

    return export_adapter(info, out, which, overwrite, progress or no_progress)


def _est_adapter(info, which, cfg, shapes):
    from engine.export.sizes import folder_bytes

    if is_base(which):
        return [SizeEstimate("adapter", None, 0, False, False, "The base model has no adapter to export.")]
    return [SizeEstimate("adapter", None, folder_bytes(info.adapter(which)), True)]


def _run_merged(info, out, option=None, which=None, overwrite=False, progress=None, verify=True):
    from engine.export.merge import export_merged
    from engine.export.result import no_progress

    return export_merged(info, out, which, option or "auto", overwrite=overwrite, progress=progress or no_progress)


def _est_merged(info, which, cfg, shapes):
    from engine.export.loading import native_dtype
    from engine.export.sizes import _DTYPE_BYTES, _numel

    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    n = sum(_numel(s) for k, s in shapes if not (tied and k == "lm_head.weight"))
    out = []
    for dtype in FORMATS["merged"].options:
        real = native_dtype(info) if dtype == "auto" else dtype
        out.append(SizeEstimate("merged", dtype, n * _DTYPE_BYTES[real], True))
    return out


def _run_gguf(info, out, option=None, which=None, overwrite=False, progress=None, verify=True):
    from engine.export.gguf_export import export_gguf
    from engine.export.result import no_progress

    return export_gguf(info, out, option or "q8_0", which, verify=verify, overwrite=overwrite,
                       progress=progress or no_progress)


def _est_gguf_for(name):
    def est(info, which, cfg, shapes):
        from engine.export.loading import load_tokenizer_for
        from engine.export.sizes import gguf_size

        tokenizer = load_tokenizer_for(info, None if is_base(which) else info.adapter(which))
        out = []
        for q in FORMATS[name].options:
            try:
                n, exact = gguf_size(shapes, cfg, q, tokenizer)
                out.append(SizeEstimate(name, q, n, exact))
            except ExportError as e:
                out.append(SizeEstimate(name, q, 0, False, False, str(e)))
        return out

    return est


def _run_gguf_lora(info, out, option=None, which=None, overwrite=False, progress=None, verify=True):
    from engine.export.gguf_lora import export_gguf_lora
    from engine.export.result import no_progress

    return export_gguf_lora(info, out, which, option or "f32", verify=verify, overwrite=overwrite,
                            progress=progress or no_progress)


def _est_gguf_lora(info, which, cfg, shapes):
    from engine.export.sizes import adapter_numel

    if is_base(which):
        return []
    n = adapter_numel(info.adapter(which))
    return [SizeEstimate("gguf-lora", d, n * (4 if d == "f32" else 2), True) for d in ("f32", "f16")]


def _register_all() -> None:
    from engine.export.gguf_quant import QUANT_TYPES
    from engine.export.loading import MERGE_DTYPES

    types = tuple(QUANT_TYPES)
    register(ExportFormat(
        "adapter", "Adapter (peft folder + model card)",
        "The trained adapter as a standard folder that peft loads onto the base model.",
        ("adapter",), outputs="adapter_config.json, adapter_model.safetensors, tokenizer, README.md",
        run=_run_adapter, estimate=_est_adapter))
    register(ExportFormat(
        "merged", "Merged model (safetensors)",
        "The adapter folded into the base weights: a full model folder that plain transformers loads.",
        ("mergeable",), "dtype", MERGE_DTYPES, "auto",
        outputs="model*.safetensors, config.json, generation_config.json, tokenizer, README.md",
        run=_run_merged, estimate=_est_merged))
    register(ExportFormat(
        "gguf", "GGUF file (llama.cpp, LM Studio, Ollama)",
        "The merged model as one GGUF file, checked by answering sample prompts in llama.cpp (or "
        "transformers' GGUF reader); an Ollama Modelfile is written beside it.",
        ("mergeable",), "GGUF type", types, "q8_0",
        outputs="<run>.<type>.gguf, Modelfile, README.md", run=_run_gguf, estimate=_est_gguf_for("gguf")))
    register(ExportFormat(
        "ollama", "Ollama model (GGUF + Modelfile)",
        "A GGUF file and a Modelfile with the chat template, stop tokens and system prompt; create "
        "the model with `ollama create NAME -f Modelfile`.",
        ("mergeable",), "GGUF type", types, "q4_k_m",
        outputs="<run>.<type>.gguf, Modelfile, README.md", run=_run_gguf, estimate=_est_gguf_for("ollama")))
    register(ExportFormat(
        "gguf-lora", "GGUF LoRA adapter (llama.cpp --lora)",
        "A LoRA in llama.cpp's adapter format, applied to the base model's GGUF without merging.",
        ("adapter", "lora_adapter"), "tensor type", ("f32", "f16"), "f32",
        outputs="<run>.lora.<type>.gguf, README.md (with a base GGUF and Modelfile on request)",
        run=_run_gguf_lora, estimate=_est_gguf_lora))


_register_all()
