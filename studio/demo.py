"""The demo run: the bundled model and persona data set, preselected so Start works at once."""

from __future__ import annotations

from engine.config import RunConfig
from studio.run_control import display_path


def demo_config(steps: int = 30, out: str = "runs/demo") -> RunConfig:
    """The engine's measured demo recipe (engine.demo), with paths shown relative when possible."""
    try:
        from engine.demo import demo_config as engine_demo
    except ImportError:  # an engine without the demo verb: the defaults already point at the demo
        cfg = RunConfig()
        cfg.train.max_steps = steps
        cfg.output_dir = out
        return cfg
    cfg = engine_demo(steps, out)
    cfg.data.path = display_path(cfg.data.path)
    return cfg
