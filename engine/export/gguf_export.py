"""Export a run as a GGUF file for llama.cpp, Ollama and LM Studio — checked by its consumer.

    export_gguf(run, out, "q4_k_m")   → out/<run>.q4_k_m.gguf, out/Modelfile, out/README.md

1. Everything that can refuse does so before a weight is loaded: the type (K-quants need
   llama-cpp-python, with the install command), the architecture, rope scaling and tokenizer.
2. The adapter is merged in float32 (or the base taken as is, ``which="base"``) and written with
   the gguf package; K-quants go through an f16 file and llama.cpp's quantizer.
3. Verification: llama.cpp (when installed) or transformers' GGUF reader answers a few prompts
   greedily; the agreement with the merged model goes into the result and the model card.
4. An Ollama Modelfile is written beside the file (``engine.export.ollama``).
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.export.atomic import ExportError, atomic_dir
from engine.export.result import ExportResult, Progress, no_progress
from engine.export.runinfo import RunInfo, is_base, load_run


def gguf_filename(info: RunInfo, qtype: str, which: str | None = None) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", info.name).strip("-") or "model"
    if is_base(which):
        stem += "-base"
    return f"{stem}.{qtype}.gguf"


def tokenizer_pre_override(info: RunInfo) -> str | None:
    """The demo model is SmolLM2, whose tokenizer splits digits one by one; its tokenizer.json,
    converted from the demo's GGUF, no longer says so, but llama.cpp must know ("smollm")."""
    return "smollm" if info.config.model.name_or_path == "demo" else None


def preflight(info: RunInfo, qtype: str, which: str | None = None):
    """Refuse what cannot be exported, before any weight is loaded. Returns the QuantType."""
    from engine.export.gguf_quant import get_quant_type, require_quantizer
    from engine.export.loading import load_tokenizer_for
    from engine.export.merge import cannot_merge_message
    from engine.export.to_gguf import check_gguf_support
    from engine.models import ModelError, resolve_model_config

    q = get_quant_type(qtype)
    require_quantizer(q)
    src = None
    if not is_base(which):
        if not info.gives_full_model:
            raise ExportError(cannot_merge_message(info) + " A GGUF file needs merged weights; export the adapter "
                              "instead, or a GGUF LoRA adapter (gguf-lora) when it is a LoRA.")
        src = info.adapter(which)
    try:
        cfg = resolve_model_config(info.config.model.name_or_path, info.config.model.trust_remote_code,
                                   info.config.model.offline)
    except ModelError as e:
        raise ExportError(str(e)) from None
    check_gguf_support(cfg, load_tokenizer_for(info, src), tokenizer_pre_override(info))
    return q


def verify_file(model, tokenizer, path: Path, label: str, system: str | None = None, lora: Path | None = None,
                progress: Progress = no_progress):
    """The file's ``Agreement`` with ``model``: in llama.cpp when installed, else transformers."""
    from engine.export.chat_tokens import eos_ids
    from engine.export.gguf_quant import llama_cpp_available
    from engine.export.verify import TransformersRuntime, compare

    stop = eos_ids(tokenizer, getattr(model, "generation_config", None))
    if llama_cpp_available():
        from engine.export.llamacpp import LlamaCppModel

        progress("Verifying: llama.cpp answers the sample prompts", None, None)
        runtime = LlamaCppModel(path, lora=lora)
    else:
        if lora is not None:
            raise ExportError("Checking a GGUF LoRA adapter needs llama.cpp (pip install 'peft-studio[llama]').")
        progress("Verifying: transformers reads the GGUF back", None, None)
        runtime = TransformersRuntime(path, tokenizer)
    try:
        return compare(model, tokenizer, runtime, label, system=system, stop_ids=stop)
    finally:
        runtime.close()


def export_gguf(run: str | Path | RunInfo, out: str | Path, qtype: str = "q8_0", which: str | None = None,
                verify: bool = True, overwrite: bool = False, progress: Progress = no_progress,
                modelfile: bool = True) -> ExportResult:
    """Write ``out/<run>.<qtype>.gguf`` (+ Modelfile, README) from the merged model.

    ``qtype``: any name in ``gguf_quant.QUANT_TYPES``. ``which``: final (default), best, latest,
    checkpoint-N, a path, or ``base``. ``verify``: compare greedy answers with the merged model
    in llama.cpp (or transformers' reader) and record the agreement. Raises ExportError.
    """
    from engine.export.loading import saved_config
    from engine.export.merge import merged_model
    from engine.export.to_gguf import write_gguf
    from engine.modelcard import render_run_card

    info = run if isinstance(run, RunInfo) else load_run(run)
    q = preflight(info, qtype, which)
    out = Path(out).expanduser()
    fname = gguf_filename(info, q.name, which)
    details: dict = {"gguf_type": q.title, "gguf_file": fname, "dtype": "float32", "quantizer": q.quantizer}
    with atomic_dir(out, overwrite) as tmp:
        # float32 merge: the GGUF conversion then rounds once, to the requested type.
        merged, tokenizer, src, _ = merged_model(info, which, "float32", progress)
        pre = tokenizer_pre_override(info)
        if q.needs_llama_cpp:
            from engine.export.llamacpp import quantize

            f16 = tmp / (".f16-" + fname)
            write_gguf(merged, tokenizer, f16, "f16", name=info.name, tokenizer_pre=pre, progress=progress)
            progress(f"Quantizing to {q.title} with llama.cpp", None, None)
            quantize(f16, tmp / fname, q.llama_ftype)
            f16.unlink()
        else:
            write_gguf(merged, tokenizer, tmp / fname, q.name, name=info.name, tokenizer_pre=pre, progress=progress)
        details["size_bytes"] = (tmp / fname).stat().st_size
        system = info.config.data.system_prompt if not info.is_bare_adapter else None
        if verify:
            agreement = verify_file(merged, tokenizer, tmp / fname, q.title, system, progress=progress)
            details["agreement"] = agreement.as_dict()
            details["max_abs_logit_diff"] = agreement.max_abs_logit_diff
        if modelfile:
            from engine.export.ollama import build_modelfile, ollama_model_name

            mf = build_modelfile(fname, tokenizer, getattr(merged, "generation_config", None), system,
                                 getattr(merged.config, "max_position_embeddings", None))
            (tmp / "Modelfile").write_text(mf.text, encoding="utf-8")
            details["ollama_command"] = mf.create_command(ollama_model_name(info.name), out)
            details["ollama_template"] = mf.template.source is not None
            details["stop_tokens"] = mf.stops
        details["source"] = str(src) if src else "base"
        card = render_run_card(info, "gguf", out.name, which or "final",
                               {**details, "adapter_config": saved_config(src) if src else {}})
        (tmp / "README.md").write_text(card, encoding="utf-8")
    if verify:
        details["agreement_sentence"] = details["agreement"]["sentence"]
    return ExportResult("gguf", out.absolute(), details=details)


def quant_type_choices() -> list[dict]:
    """Every GGUF type with whether it can be made here (for menus): name, title, description,
    quantizer, available, reason (the install command when llama-cpp-python is missing)."""
    from engine.export.gguf_quant import INSTALL_HINT, QUANT_TYPES, llama_cpp_available

    have = llama_cpp_available()
    return [{"name": q.name, "title": q.title, "description": q.description, "quantizer": q.quantizer,
             "available": have or not q.needs_llama_cpp,
             "reason": "" if (have or not q.needs_llama_cpp) else INSTALL_HINT}
            for q in QUANT_TYPES.values()]


__all__ = ["export_gguf", "gguf_filename", "preflight", "quant_type_choices", "verify_file"]
