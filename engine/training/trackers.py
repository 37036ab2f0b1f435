"""Experiment trackers through transformers' own integrations (``train.report_to``).

The Trainer builds TensorBoardCallback, MLflowCallback and WandbCallback itself from
``TrainingArguments.report_to``; those read their settings from the environment. A run sets
defaults that keep everything in the run folder and offline, without overriding what the user
exported:

* ``tensorboard``: ``TENSORBOARD_LOGGING_DIR=<run>/tensorboard`` (``tensorboard --logdir <run>``);
* ``mlflow``: ``MLFLOW_TRACKING_URI=file:<run>/mlruns`` (MLflow's local file store),
  ``MLFLOW_EXPERIMENT_NAME=peft-studio``, ``MLFLOW_ALLOW_FILE_STORE=true``;
* ``wandb``: ``WANDB_MODE=offline``, ``WANDB_DIR=<run>``, ``WANDB_PROJECT=peft-studio``
  (``wandb sync`` uploads it later).
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

from engine.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlruns"
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny"),
            "wandb": ("wandb", "wandb")}


def check_trackers(report_to: list[str]) -> None:
    """ConfigError naming train.report_to when a chosen tracker's package is not installed."""
    for i, name in enumerate(report_to):
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"train.report_to[{i}]", f"{name} is not installed; `pip install {package}`, or "
                              "remove it from the list", name)


def tracker_env(report_to: list[str], run_dir: Path) -> dict[str, str]:
    """The environment defaults for ``report_to`` (only keys the user has not set)."""
    run_dir = Path(run_dir).resolve()
    env: dict[str, str] = {}
    if "tensorboard" in report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD_DIR)
    if "mlflow" in report_to:
        env["MLFLOW_TRACKING_URI"] = (run_dir / MLFLOW_DIR).as_uri()
        env["MLFLOW_EXPERIMENT_NAME"] = "peft-studio"
        # MLflow 3 refuses the file store unless told (it prefers a database, which needs
        # SQLAlchemy: not in mlflow-skinny); the file store needs nothing and works offline.
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    if "wandb" in report_to:
        env.update(WANDB_MODE="offline", WANDB_DIR=str(run_dir), WANDB_PROJECT="peft-studio")
    return {k: v for k, v in env.items() if k not in os.environ}


@contextmanager
def trackers(report_to: list[str], run_dir: Path):
    """Set the trackers' environment defaults for the duration of a run, then put it back."""
    env = tracker_env(report_to, run_dir)
    os.environ.update(env)
    try:
        yield env
    finally:
        for k in env:
            os.environ.pop(k, None)
