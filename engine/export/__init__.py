"""Ship a run: export its adapter, merge it into the base, write GGUF, combine adapters.

Every output is a folder written atomically (a temporary sibling renamed into place), so an
export that fails — a read-only or full disk, a bad adapter — leaves no half-written folder.
Errors meant for the user are ExportError (an engine.errors.UserError) with a plain message.

    export_adapter(run_dir, out)                       standard peft folder + README model card
    export_merged(run_dir, out, dtype="bfloat16")      full safetensors model folder
    export_gguf(run_dir, out, qtype="q4_k_m")          <run>.q4_k_m.gguf + Modelfile, checked in llama.cpp
    export_gguf_lora(run_dir, out)                     a LoRA as a llama.cpp GGUF adapter (no merge)
    FORMATS / get_format / format_choices / estimate_sizes   the export-format registry
    merge_adapters([a, b], [0.7, 0.3], out, "ties")    weighted LoRA merge → adapter folder
"""

from engine.export.adapter import export_adapter
from engine.export.atomic import ExportError, atomic_dir
from engine.export.formats import FORMATS, estimate_sizes, format_choices, get_format
from engine.export.gguf_export import export_gguf
from engine.export.gguf_lora import export_gguf_lora
from engine.export.gguf_quant import INSTALL_HINT, llama_cpp_available
from engine.export.loading import MERGE_DTYPES, normalize_dtype
from engine.export.merge import cannot_merge_message, export_merged, merged_model
from engine.export.result import ExportResult
from engine.export.runinfo import RunInfo, load_run
from engine.export.to_gguf import GGUF_TYPES
from engine.export.weighted import COMBINATIONS, DENSITY_COMBINATIONS, merge_adapters

__all__ = [
    "COMBINATIONS", "DENSITY_COMBINATIONS", "FORMATS", "GGUF_TYPES", "INSTALL_HINT", "MERGE_DTYPES", "ExportError", "ExportResult",
    "RunInfo", "atomic_dir", "cannot_merge_message", "estimate_sizes", "export_adapter", "export_gguf",
    "export_gguf_lora", "export_merged", "format_choices", "get_format", "llama_cpp_available", "load_run", "merge_adapters",
    "merged_model", "normalize_dtype",
]
