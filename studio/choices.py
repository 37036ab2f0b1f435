"""The engine's lists of choices as the studio shows them, each behind one function.

Export formats and types come from the engine's export-format registry; the weighted-merge
choices and the data formats' column roles still mirror the engine by hand (marked below), each
behind one function so that no panel holds a copy.
"""

from __future__ import annotations

# ---- export (formats and types: engine.export.formats; weighted-merge choices mirror engine.export) ----

_COMBINATIONS = ["linear", "cat", "svd", "ties", "dare_linear", "dare_ties"]  # engine.export.COMBINATIONS
_DENSITY_COMBINATIONS = ("ties", "dare_linear", "dare_ties")           # engine.export.DENSITY_COMBINATIONS
_COMBINATION_HELP = {
    "linear": "Scales each adapter's A and B; needs equal ranks. Weights 1,0 give the first adapter back.",
    "cat": "Concatenates the adapters: exactly the weighted sum of their updates (the rank adds up).",
    "svd": "The weighted sum of the updates, compressed back to a rank by SVD.",
    "ties": "TIES: keeps each adapter's largest entries (density), elects signs, then sums.",
    "dare_linear": "DARE: drops entries at random (keeps density), rescales, then sums.",
    "dare_ties": "DARE pruning with TIES sign election.",
}


def export_modes() -> list[tuple[str, str]]:
    """(key, title) of each kind of export, in menu order: the engine's export-format registry
    (engine.export.formats.FORMATS), then the weighted merge of several adapters (not a format of
    one run)."""
    from engine.export.formats import FORMATS

    return [(f.name, f.title) for f in FORMATS.values()] + [("weighted", "Weighted merge of LoRA adapters")]


def merge_dtypes() -> list[str]:
    """Precisions a merged model can be written in ("auto" = the base checkpoint's own)."""
    from engine.export.formats import FORMATS

    return list(FORMATS["merged"].options)


def gguf_types() -> list[str]:
    """GGUF tensor types the export writes (the registry's; K-quants need llama-cpp-python)."""
    from engine.export.formats import FORMATS

    return list(FORMATS["gguf"].options)


def combinations() -> list[str]:
    """How a weighted merge combines LoRA adapters (peft's ``add_weighted_adapter`` names)."""
    return list(_COMBINATIONS)


def density_combinations() -> tuple[str, ...]:
    """The combinations that take a density (fraction of entries kept)."""
    return _DENSITY_COMBINATIONS


def combination_help(name: str) -> str:
    return _COMBINATION_HELP.get(name, "")


# ---- data (mirrors engine/data: formats.COLUMN_KEYS and readers; to become its format registry) -------

_FORMAT_ROLES = {
    "alpaca": ("instruction", "input", "output", "system"),
    "sharegpt": ("conversations",),
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
_DATA_FILE_TYPES = ("jsonl", "ndjson", "json", "csv", "tsv", "parquet", "arrow")


def format_roles() -> dict[str, tuple[str, ...]]:
    """Per data format, the internal names ``data.columns`` can map to a file's columns."""
    return dict(_FORMAT_ROLES)


def data_file_filter() -> str:
    """The file dialog's filter for data files."""
    return "Data files (" + " ".join(f"*.{t}" for t in _DATA_FILE_TYPES) + ");;All files (*)"
