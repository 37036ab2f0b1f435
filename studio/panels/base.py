"""What a panel is: the ``Panel`` protocol, where it sits (``Area``), and the ``Studio`` it is built with.

A panel is one widget in one module of studio/panels/, listed once in studio/panels/registry.py.
The window places it (a central tab or a dock, by ``area``) and never calls it by name: the panel
connects itself, in ``create``, to the shared services it needs (the config model, the run
controller, the run files, the shared signals of ``Bus``). Panels never call each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from studio.config_model import ConfigModel
    from studio.run_controller import RunController
    from studio.run_files import RunFiles
    from studio.settings import Settings


class Area(str, Enum):
    """Where a panel sits. Panels of one dock area are tabbed together, in list order, the first
    one raised; central panels are the central tabs."""

    CENTRAL = "central"
    LEFT = "left"
    RIGHT = "right"
    BOTTOM = "bottom"


class Bus(QObject):
    """Signals one panel publishes for others, so that no panel needs another one."""

    sig_model_info = Signal(object)  # engine inspect_model's dict for the chosen model, or None while unknown
    sig_overlay = Signal(list)       # run folders whose curves the monitor draws over its run ([]: none)
    sig_device = Signal(object)      # the device the estimate judges against: a GPU name/size, or None (this machine)


@dataclass
class Studio:
    """The services a panel may use (built by the main window before the panels)."""

    settings: Settings
    config: ConfigModel
    runs: RunController
    files: RunFiles
    bus: Bus
    show_panel: Callable[[str], None]     # raise the panel with this key (its tab or dock)
    dialog_parent: QWidget | None = None
    # take the user to the control that sets a run-file path ("Go to …" buttons; studio/controls.py)
    go_to: Callable[[str], bool] = lambda path: False
    # set the control for a run-file path to a value and go there (one-click fixes; studio/controls.py)
    set_control: Callable[[str, object], bool] = lambda path, value: False


@runtime_checkable
class Panel(Protocol):
    """A studio panel. ``key`` is stable (the dock is saved as ``dock-<key>`` in the layout)."""

    key: ClassVar[str]
    title: ClassVar[str]
    area: ClassVar[Area]
    scrollable: ClassVar[bool]   # in a dock: wrapped in a scroll area (False for views that scroll themselves)

    @classmethod
    def create(cls, studio: Studio) -> Panel:
        """Build the panel and connect it to the studio's signals. Raising is a bug in the panel:
        the window does not open without it (registry.build_panels)."""
        ...

    def plot_steps(self) -> list[Callable[[], None]]:
        """Plot-building steps, run one per event-loop turn once pyqtgraph is imported ([] for none)."""
        ...

    def shutdown(self) -> None:
        """Stop background work: the window is closing."""
        ...


class PanelDefaults:
    """Mixin with the protocol's optional parts: scrolled in a dock, no plots, nothing to shut down."""

    scrollable: ClassVar[bool] = True

    def plot_steps(self) -> list[Callable[[], None]]:
        return []

    def shutdown(self) -> None:
        pass
