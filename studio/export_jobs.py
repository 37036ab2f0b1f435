"""The Export tab's jobs (Qt-free; run in helper processes, studio/tasks.py).

* ``export_choices(state, run_dir, which)``: every format of the engine's registry
  (engine.export.formats) with whether this run can be exported to it and why not, each option
  (GGUF type, dtype) with its availability (K-quants need llama-cpp-python: the install command
  is the reason), and the size of every format and option before anything is written
  (``estimate_sizes``: no weights loaded). It runs in a helper because it imports llama.cpp's
  bindings and builds the model on the meta device.
* ``export_format(state, name, kwargs)``: one export through the registry
  (``get_format(name).run``), with progress; the ExportResult as a dict.
"""

from __future__ import annotations


def export_choices(state, run_dir: str, which: str | None = None) -> dict:
    """{"formats": [{name, available, reason, options: [{value, description, available, reason}]}],
    "sizes": [{format, option, bytes, text, exact, available, reason}], "sizes_error": str,
    "llama_cpp": bool, "install_hint": str}."""
    from engine.export import INSTALL_HINT, ExportError, llama_cpp_available
    from engine.export.formats import estimate_sizes, format_choices
    from engine.export.runinfo import load_run
    from studio.jobs import jsonable

    info = load_run(run_dir)
    formats = [{"name": c.format.name, "available": c.available, "reason": c.reason,
                "options": [vars(o) for o in c.options]} for c in format_choices(info, which)]
    sizes, sizes_error = [], ""
    state.set_status("Estimating the sizes")
    try:
        for e in estimate_sizes(info, which):
            sizes.append({**vars(e), "text": e.text() if e.available or e.bytes else ""})
    except ExportError as e:  # the base model's config cannot be read (offline, deleted): say so, keep the formats
        sizes_error = str(e)
    return jsonable({"formats": formats, "sizes": sizes, "sizes_error": sizes_error,
                     "llama_cpp": llama_cpp_available(), "install_hint": INSTALL_HINT})


def export_format(state, name: str, kwargs: dict) -> dict:
    """Run the registry's export ``name`` with ``kwargs`` (run, out, option, which, overwrite,
    verify), reporting its stages and progress."""
    from engine.export.formats import get_format
    from studio.jobs import jsonable

    def progress(stage, done=None, total=None):
        state.set_status(stage)
        state.set_progress_value(done, total)

    kw = dict(kwargs)
    run = kw.pop("run")
    r = get_format(name).run(run, progress=progress, **kw)
    return {"kind": r.kind, "path": str(r.path), "note": r.note, "details": jsonable(r.details)}


JOBS = {"export_choices": export_choices, "export_format": export_format}
