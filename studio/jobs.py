"""The studio's ML jobs, as plain functions (no Qt) run in a job helper process (studio/process.py).

Each is ``job(state, *args)`` (studio/task_state.py) and is listed in ``JOBS``. Arguments and
results cross the process boundary as JSON (engine/wire.py): a RunConfig as ``cfg.to_dict()``,
results as dicts, lists, strings and numbers.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

PREVIEW_ROWS = 40        # examples rendered for the table
LENGTH_SAMPLE = 20_000   # examples tokenized for the histogram (enough for the shape, bounded time)


def jsonable(value):
    """``value`` with the types JSON lacks made plain: paths and dtypes as text, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def _config(cfg: dict):
    from engine.config import RunConfig

    return RunConfig.from_dict(cfg, "the studio")


def warm_up(state) -> float:
    t = time.perf_counter()
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    return time.perf_counter() - t


def inspect(state, name_or_path: str, trust_remote_code: bool, offline: bool) -> dict:
    from engine.inspect import inspect_model

    return jsonable(inspect_model(name_or_path, trust_remote_code=trust_remote_code, offline=offline))


def cached_models(state) -> list[str]:
    from engine.models import list_cached_models

    return list(list_cached_models())


def count(state, cfg: dict, gpu: str | None = None) -> dict:
    """Parameter counts and the saved size, for the device the estimate judges against (``gpu``;
    None: this machine), so the method panel and the estimate show one size."""
    from engine.estimate import count_params_on

    return jsonable(count_params_on(_config(cfg), gpu))


def estimate(state, cfg: dict, gpu: str | None) -> dict:
    """The engine's estimate as a plain dict."""
    from engine.estimate import estimate as engine_estimate
    from engine.estimate.memory import LABELS

    r = engine_estimate(_config(cfg), gpu=gpu)
    keys = ("components", "peak_allocated", "peak_reserved", "device_total", "verdict", "gpu_name",
            "gpu_bytes", "total_params", "trainable_params", "adapter_bytes", "notes", "suggestions",
            "max_batch_size", "max_seq_len", "on_cpu", "layout", "processes", "assumptions")
    out = {k: getattr(r, k, None) for k in keys}
    out["components"] = dict(out["components"] or {})
    out["labels"] = dict(LABELS)
    return jsonable(out)


def cluster_script(state, cfg: dict, nodes: int, gpus_per_node: int, partition: str, time_limit: str) -> dict:
    """Write the run's files and its sbatch script into the run folder ("Where to run": a
    cluster); {"path", "text"}. Reads the model's config and checks the method, so it runs here."""
    from engine.distributed import launch, slurm

    run_cfg = launch.apply_topology(_config(cfg), nodes=nodes, gpus_per_node=gpus_per_node)
    files = launch.prepare(run_cfg, on_gpu=True, absolute=True, cluster=True)
    path = slurm.write(files, slurm.SlurmOptions(nodes=nodes, gpus_per_node=gpus_per_node,
                                                 partition=partition, time=time_limit))
    return {"path": str(path), "text": path.read_text(encoding="utf-8")}


def gpu_list(state) -> list:
    """[[name, bytes]] of the GPUs the estimator knows."""
    from engine.estimate.gpus import choices, parse_gpu

    out = []
    for name in choices():
        try:
            out.append([name, parse_gpu(name).total_bytes])
        except ValueError:  # an ambiguous alias; the list has the sized names too
            pass
    return out


@dataclass
class Preview:
    """What the data panel shows; crosses the wire as ``dataclasses.asdict`` and back."""

    format: str = ""
    reason: str = ""
    warnings: list = field(default_factory=list)
    n_train: int = 0
    n_validation: int = 0
    n_skipped: int = 0
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)      # [[text, trained], …] per example
    lengths: list = field(default_factory=list)
    error: str = ""
    # The data itself was refused (a DataError): Start is gated on it. False for problems that
    # are not the file's (the model's tokenizer cannot be loaded).
    rejected: bool = False
    error_field: str = ""    # the setting the refusal names (data.columns, data.format, …) or ''
    # Only the first records were read (a large file: studio/data_jobs.py stream_preview); the
    # counts are the Report tab's, which reads the whole file in the background.
    partial: bool = False


_TOKENIZERS: dict = {}


def _tokenizer(name: str, trust: bool, offline: bool):
    key = (name, trust, offline)
    if key not in _TOKENIZERS:
        from engine.models import load_tokenizer

        _TOKENIZERS[key] = load_tokenizer(name, trust_remote_code=trust, offline=offline)
    return _TOKENIZERS[key]


def preview(state, cfg: dict) -> dict:
    """Read, detect, render and measure a run's data set for the data panel (a Preview as a dict)."""
    from engine.data import DataError, load_records, render_segments, token_lengths
    from studio.messages import plain_message

    run_cfg = _config(cfg)
    data_cfg, m = run_cfg.data, run_cfg.model
    if run_cfg.train.task != "sft":
        return _preference_preview(run_cfg)
    from studio.data_jobs import is_large, stream_preview

    if is_large(data_cfg):  # reading every record into Python first would take minutes
        return stream_preview(run_cfg)
    try:
        loaded = load_records(data_cfg)
    except DataError as e:
        field_name = e.field if isinstance(e.field, str) and e.field.startswith("data.") else ""
        p = Preview(error=str(e), rejected=True, error_field=field_name)
        try:  # the columns still let the user fix the mapping
            from engine.data import read_table

            p.columns = list(read_table(data_cfg.path).columns)
        except (DataError, OSError, ValueError):
            pass
        return dataclasses.asdict(p)
    p = Preview(format=loaded.format, reason=loaded.reason, warnings=list(loaded.warnings),
                n_train=len(loaded.train), n_validation=len(loaded.validation), n_skipped=loaded.n_skipped,
                columns=list(getattr(loaded, "columns", []) or []))
    try:
        tok = _tokenizer(m.name_or_path, m.trust_remote_code, m.offline)
    except Exception as e:  # noqa: BLE001 - the data is fine; only the rendering needs the model's tokenizer
        p.error = f"The examples cannot be rendered without the model's tokenizer: {plain_message(e)}"
        return dataclasses.asdict(p)
    p.rows = [render_segments(r, tok, data_cfg) for r in loaded.train[:PREVIEW_ROWS]]
    p.lengths = token_lengths(loaded.train[:LENGTH_SAMPLE], tok, data_cfg)
    return jsonable(dataclasses.asdict(p))


def _preference_preview(run_cfg) -> dict:
    """The data panel's view of preference data (train.task dpo, orpo, kto, simpo): the shape and
    why, the preference report's lines, and each row as prompt (masked), chosen answer (tinted,
    ✓) and rejected answer (✗); lengths are the chosen answers' tokens."""
    from engine.data import DataError, prepare_preference_data
    from engine.tasks import get_task

    task = get_task(run_cfg.train.task)
    m = run_cfg.model
    try:
        tok = _tokenizer(m.name_or_path, m.trust_remote_code, m.offline)
    except Exception:  # noqa: BLE001 - the report then counts characters instead of tokens
        tok = None
    try:
        data = prepare_preference_data(run_cfg.data, task.data, tok, seed=run_cfg.train.seed)
    except DataError as e:
        # Refused data gates Start as for SFT; the field may be train.task (labelled answers for a
        # paired task), whose control the Training panel shows the message at.
        return dataclasses.asdict(Preview(error=str(e), rejected=True, error_field=e.field or ""))
    rep = data.report

    def text(v) -> str:
        return v if isinstance(v, str) else "\n".join(f"{t['role']}: {t['content']}" for t in v)

    rows, lengths = [], []
    for r in data.train.select(range(min(PREVIEW_ROWS, len(data.train)))):
        if "completion" in r:  # KTO
            mark = "✓ " if r["label"] else "✗ "
            rows.append([[text(r["prompt"]) + "\n", False], [mark + text(r["completion"]), bool(r["label"])]])
        else:
            rows.append([[text(r["prompt"]) + "\n", False], ["✓ " + text(r["chosen"]) + "\n", True],
                         ["✗ " + text(r["rejected"]), False]])
    if tok is not None:
        key = "completion" if task.data == "unpaired" else "chosen"
        sample = data.train.select(range(min(LENGTH_SAMPLE, len(data.train))))[key]
        lengths = [len(tok(text(v), add_special_tokens=False)["input_ids"]) for v in sample]
    p = Preview(format=f"preference ({rep.shape})", reason=rep.reason, warnings=rep.lines()[1:],
                n_train=len(data.train), n_validation=len(data.eval) if data.eval is not None else 0,
                n_skipped=rep.skipped, rows=rows, lengths=lengths)
    return jsonable(dataclasses.asdict(p))


# ---- export -------------------------------------------------------------------------------------------

def export(state, kind: str, kwargs: dict) -> dict:
    """Run one export (engine.export) with progress; the ExportResult as a dict.

    ``kind``: adapter | merged | gguf | weighted; ``kwargs``: the engine function's own arguments.
    """
    from engine import export as ex

    fn = {"adapter": ex.export_adapter, "merged": ex.export_merged, "gguf": ex.export_gguf,
          "weighted": ex.merge_adapters}[kind]

    def progress(stage, done=None, total=None):
        state.set_status(stage)
        state.set_progress_value(done, total)

    r = fn(progress=progress, **kwargs)
    return {"kind": r.kind, "path": str(r.path), "note": r.note, "details": jsonable(r.details)}


# ---- playground --------------------------------------------------------------------------------------

# The playground keeps its model loaded in this process between generations: (key, Playground).
_PLAYGROUND: dict = {}


def generate(state, run_dir: str, signature: list, sources: list[str], messages: list[dict],
             settings: dict, extra: dict | None = None) -> dict:
    """Stream one prompt through each source in turn (partial results ``{"side", "piece"}`` and
    ``{"side", "done": true}``); stops at the next token once interrupted.

    The loaded model is reused while ``(run_dir, signature)`` is unchanged; a new signature (the run
    saved new adapters) loads what is on disk now. ``extra``: {label: adapter folder} of other
    runs' adapters on the same base, offered beside the run's own. Returns ``{"stopped": bool}``.
    """
    from engine.inference import GenerationSettings
    from engine.playground import Playground

    extra = dict(extra or {})
    key = [run_dir, signature, sorted(extra.items())]
    if _PLAYGROUND.get("key") != key:
        _PLAYGROUND.clear()
        pg = Playground(Path(run_dir))
        for label, path in extra.items():
            pg.add_source(label, path)
        _PLAYGROUND.update(key=key, pg=pg)
    pg = _PLAYGROUND["pg"]
    if not pg.loaded:
        pg.load(progress=lambda msg: state.set_status(msg + "…"))
    cancel = state.as_event()
    for side, source in enumerate(sources):
        if state.is_interruption_requested():
            break
        state.set_status(f"Generating with {source}…")
        for piece in pg.stream(source, messages, GenerationSettings(**settings), cancel):
            state.set_partial_result({"side": side, "piece": piece})
        state.set_partial_result({"side": side, "done": True})
    return {"stopped": state.is_interruption_requested()}


JOBS = {f.__name__: f for f in (warm_up, inspect, cached_models, count, estimate, gpu_list, preview, export,
                                generate, cluster_script)}

# The Data tab's report (studio/data_jobs.py) and the Export tab's formats and sizes
# (studio/export_jobs.py) live in their own modules; their jobs join this table.
from studio import data_jobs as _data_jobs  # noqa: E402
from studio import export_jobs as _export_jobs  # noqa: E402

JOBS.update(_data_jobs.JOBS)
JOBS.update(_export_jobs.JOBS)
