"""The studio's panels, in the order they are placed (central tabs, then each dock area's tabs).

Adding a panel: write ``studio/panels/<name>.py`` with a class that satisfies ``Panel``
(studio/panels/base.py), and add it to ``PANELS`` below. Nothing else changes.
"""

from __future__ import annotations

from studio.panels.base import Panel, Studio
from studio.panels.data import DataPanel
from studio.panels.estimate import EstimatePanel
from studio.panels.export import ExportPanel
from studio.panels.log import LogPanel
from studio.panels.method import MethodPanel
from studio.panels.model import ModelPanel
from studio.panels.monitor import MonitorPanel
from studio.panels.playground import PlaygroundPanel
from studio.panels.runs import RunsPanel
from studio.panels.training import TrainingPanel

PANELS: list[type[Panel]] = [
    MonitorPanel,      # central tabs
    DataPanel,
    RunsPanel,
    PlaygroundPanel,
    ExportPanel,
    ModelPanel,        # left dock
    MethodPanel,
    TrainingPanel,
    EstimatePanel,     # right dock
    LogPanel,          # bottom dock
]


class PanelBuildError(RuntimeError):
    """A panel could not be built: a bug in that panel, reported by name (never a missing tab)."""


def build_panels(studio: Studio, panels: list[type[Panel]] | None = None) -> dict[str, Panel]:
    """Build every panel, keyed by ``key``. Raises PanelBuildError (with the cause chained) when a
    panel fails to build or does not satisfy the protocol, and for a duplicate key."""
    built: dict[str, Panel] = {}
    for cls in PANELS if panels is None else panels:
        key = getattr(cls, "key", None)
        if not key or key in built:
            raise PanelBuildError(f"{cls.__name__}: {'duplicate' if key else 'missing'} panel key {key!r}")
        try:
            panel = cls.create(studio)
        except Exception as e:
            raise PanelBuildError(f"The {getattr(cls, 'title', key)} panel ({cls.__module__}.{cls.__name__}) "
                                  f"could not be built: {type(e).__name__}: {e}") from e
        if not isinstance(panel, Panel):
            raise PanelBuildError(f"{cls.__name__} does not satisfy the Panel protocol (studio/panels/base.py)")
        built[key] = panel
    return built
