"""What several verbs share: reading a run file with ``--set`` overrides."""

from __future__ import annotations

from engine.config import RunConfig


def load_config(path: str, overrides: list[str] | None = None) -> RunConfig:
    """The run file at ``path`` with ``key=value`` overrides applied (ConfigError when bad)."""
    cfg = RunConfig.load(path)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def add_set_option(p, help_text: str = "override a field, e.g. --set train.lr=1e-4 (repeatable)") -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help_text)
