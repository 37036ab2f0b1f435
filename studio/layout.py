"""Where the panels sit, and the layout's persistence: central tabs and docks placed by each
panel's ``area`` (studio/panels/base.py), saved on close and restored on start."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabWidget

from studio.panels.base import Area, Panel
from studio.settings import Settings
from studio.widgets import scroll

# Bump when the dock arrangement changes: a state saved by an older layout is then ignored.
LAYOUT_VERSION = 2
_DOCK_AREAS = {Area.LEFT: Qt.DockWidgetArea.LeftDockWidgetArea, Area.RIGHT: Qt.DockWidgetArea.RightDockWidgetArea,
               Area.BOTTOM: Qt.DockWidgetArea.BottomDockWidgetArea}
# First sizes (pixels): the side docks' widths, the bottom dock's height.
_DEFAULT_SIZE = {Area.LEFT: 430, Area.RIGHT: 330, Area.BOTTOM: 170}


class WindowLayout:
    """Places ``panels`` in ``window``: central ones as tabs (``tabs``), the rest as docks
    (``docks``, by key), one tab group per dock area with its first panel raised."""

    def __init__(self, window: QMainWindow, panels: dict[str, Panel], settings: Settings):
        self.window, self.panels, self.settings = window, panels, settings
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.docks: dict[str, QDockWidget] = {}
        groups: dict[Area, list[QDockWidget]] = {}
        for key, panel in panels.items():
            if panel.area == Area.CENTRAL:
                self.tabs.addTab(panel, panel.title)
            else:
                groups.setdefault(panel.area, []).append(self._dock(key, panel))
        window.setCentralWidget(self.tabs)
        for docks in groups.values():
            for a, b in zip(docks, docks[1:]):
                window.tabifyDockWidget(a, b)
            docks[0].raise_()
        window.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        # The side docks run the full height; the bottom dock sits under the central tabs only.
        window.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        sides = [(groups[a][0], _DEFAULT_SIZE[a]) for a in (Area.LEFT, Area.RIGHT) if a in groups]
        if sides:
            window.resizeDocks([d for d, _ in sides], [s for _, s in sides], Qt.Orientation.Horizontal)
        if Area.BOTTOM in groups:
            window.resizeDocks([groups[Area.BOTTOM][0]], [_DEFAULT_SIZE[Area.BOTTOM]], Qt.Orientation.Vertical)
        self._default_state = window.saveState(LAYOUT_VERSION)

    def _dock(self, key: str, panel: Panel) -> QDockWidget:
        d = QDockWidget(panel.title, self.window)
        d.setObjectName(f"dock-{key}")  # the saved layout finds docks by this name
        d.setWidget(scroll(panel) if panel.scrollable else panel)
        d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                      QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                      QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.window.addDockWidget(_DOCK_AREAS[panel.area], d)
        self.docks[key] = d
        return d

    def show_panel(self, key: str) -> None:
        """Bring a panel to the front: its central tab, or its dock (shown and raised)."""
        panel = self.panels[key]
        if key in self.docks:
            self.docks[key].show()
            self.docks[key].raise_()
        else:
            self.tabs.setCurrentWidget(panel)

    # -- persistence -------------------------------------------------------------------------
    def restore(self) -> None:
        geo, state = self.settings.get("window/geometry"), self.settings.get("window/state")
        if geo:
            self.window.restoreGeometry(QByteArray(geo))
        if state:
            self.window.restoreState(QByteArray(state), LAYOUT_VERSION)  # ignored if saved by an older layout
        self.tabs.setCurrentIndex(min(self.settings.get("window/central_tab"), self.tabs.count() - 1))

    def save(self) -> None:
        s = self.settings
        s.set("window/geometry", bytes(self.window.saveGeometry().data()))
        s.set("window/state", bytes(self.window.saveState(LAYOUT_VERSION).data()))
        s.set("window/central_tab", self.tabs.currentIndex())

    def reset(self) -> None:
        self.window.restoreState(self._default_state, LAYOUT_VERSION)
        for d in self.docks.values():
            d.show()
