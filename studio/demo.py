"""The demo run: the bundled model and persona data set, preselected so Start works at once."""

from __future__ import annotations

from engine.config import RunConfig
from engine.demo import demo_config as engine_demo
from studio.run_dirs import display_path


def demo_config(steps: int = 30, out: str = "runs/demo") -> RunConfig:
    """The engine's measured demo recipe (engine.demo), with paths shown relative when possible."""
    cfg = engine_demo(steps, out)
    cfg.data.path = display_path(cfg.data.path)
    return cfg
