"""lm-evaluation-harness on a loaded model (``peft-studio bench``; the optional ``bench`` extra).

Tasks run offline: lm-eval's own tasks whose data is in the local datasets cache, or task YAML
files the user provides (``include_path``: a folder of task configs, e.g. with ``dataset_path:
json`` and local ``data_files``). The model is handed over as the loaded object (lm-eval's
``HFLM(pretrained=model)``), so a peft model or a QLoRA base is evaluated exactly as loaded.
"""

from __future__ import annotations

from engine.errors import UserError


class BenchError(UserError):
    """lm-eval is missing, or a task cannot be found or run offline."""


def _harness():
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise BenchError("lm-evaluation-harness is not installed: pip install 'peft-studio[bench]' "
                         "(or pip install lm-eval).") from None
    return lm_eval, HFLM, TaskManager


def run_tasks(model, tokenizer, tasks: list[str], include_path: str | None = None, limit: float | None = None,
              batch_size: int = 8) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for ``tasks`` on ``model`` (numbers only; lm-eval's
    ``metric,filter`` keys such as ``acc,none`` become ``acc``)."""
    lm_eval, HFLM, TaskManager = _harness()
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" or in {include_path}" if include_path else "; give your task files with --include-path"
        raise BenchError(f"unknown lm-eval task(s): {', '.join(unknown)} (not among lm-eval's tasks{where}).")
    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                      log_samples=False)
    finally:
        model.train(was_training)
    results = {}
    for task, metrics in (out or {}).get("results", {}).items():
        results[task] = {k.split(",")[0]: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool) and "stderr" not in k}
    return results
