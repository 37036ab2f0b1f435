"""Where the panels sit, and the layout's persistence: central tabs and docks placed by each
panel's ``area`` (studio/panels/base.py), saved on close and restored on start."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabWidget

from studio.panels.base import Area, Panel
from studio.settings import Settings
from studio.widgets import scroll

# Bump when the dock arrangement changes: a state saved by an older layout is then ignored.
LAYOUT_VERSION = 3
_DOCK_AREAS = {Area.LEFT: Qt.DockWidgetArea.LeftDockWidgetArea, Area.RIGHT: Qt.DockWidgetArea.RightDockWidgetArea,
               Area.BOTTOM: Qt.DockWidgetArea.BottomDockWidgetArea}
# First sizes (pixels): the side docks' widths, the bottom dock's height, for a window of
# _ROOMY_WIDTH or more; a narrower window (a 1280×720 laptop) gets them scaled down.
_DEFAULT_SIZE = {Area.LEFT: 430, Area.RIGHT: 330, Area.BOTTOM: 170}
_ROOMY_WIDTH = 1480
# A restored layout whose side docks take more than this share of the window leaves the central
# tabs too little room: it is replaced by the default one.
_MAX_SIDE_SHARE = 0.62


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
        self._groups = groups
        self.size_docks()
        self._default_state = window.saveState(LAYOUT_VERSION)

    def size_docks(self) -> None:
        """Give the docks their first sizes for the window's current size."""
        window, groups = self.window, self._groups
        # Narrower windows give the docks less, and more than proportionally so: at 1280 px the
        # central tabs still get about 60% of the width (the docks scroll what does not fit).
        scale = min(1.0, max(0.55, (window.width() / _ROOMY_WIDTH) ** 2))
        sides = [(groups[a][0], int(_DEFAULT_SIZE[a] * scale)) for a in (Area.LEFT, Area.RIGHT) if a in groups]
        if sides:
            window.resizeDocks([d for d, _ in sides], [s for _, s in sides], Qt.Orientation.Horizontal)
        if Area.BOTTOM in groups:
            height = int(_DEFAULT_SIZE[Area.BOTTOM] * min(1.0, max(0.7, window.height() / 940)))
            window.resizeDocks([groups[Area.BOTTOM][0]], [height], Qt.Orientation.Vertical)

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
        """The saved geometry and layout, when they still fit this screen; else the defaults, sized
        for it (a layout saved on a large monitor must not come back cut off on a laptop)."""
        geo, state = self.settings.get("window/geometry"), self.settings.get("window/state")
        available = self._available()
        if geo:
            self.window.restoreGeometry(QByteArray(geo))
        fits = available is None or (self.window.width() <= available.width()
                                     and self.window.height() <= available.height())
        if not fits or not geo:
            self.fit_to_screen()
        if state and fits:
            self.window.restoreState(QByteArray(state), LAYOUT_VERSION)  # ignored if saved by an older layout
        self.tabs.setCurrentIndex(min(self.settings.get("window/central_tab"), self.tabs.count() - 1))

    def _available(self):
        screen = self.window.screen()
        return screen.availableGeometry() if screen is not None else None

    def fit_to_screen(self) -> None:
        """The default window size, shrunk to the screen's free area, and docks sized for it."""
        available = self._available()
        w, h = self.window.width(), self.window.height()
        if available is not None:
            w, h = min(w, available.width()), min(h, available.height())
        self.window.resize(max(w, self.window.minimumSizeHint().width()), max(h, self.window.minimumSizeHint().height()))
        self.size_docks()

    def check_fit(self) -> bool:
        """Once the window is shown (docks have their real sizes): a restored layout that squeezes
        the central tabs is replaced by the default one. Returns whether it was kept."""
        if self.layout_fits():
            return True
        self.reset()
        return False

    def layout_fits(self) -> bool:
        """Whether the side docks leave the central tabs room (no saved layout that squeezes them).
        Tabbed docks share their area: each side counts once, as wide as its widest dock."""
        widths: dict = {}
        for d in self.docks.values():
            area = self.window.dockWidgetArea(d)
            if area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea) \
                    and d.isVisible() and not d.isFloating():
                widths[area] = max(widths.get(area, 0), d.width())
        return sum(widths.values()) <= _MAX_SIDE_SHARE * max(1, self.window.width())

    def save(self) -> None:
        s = self.settings
        s.set("window/geometry", bytes(self.window.saveGeometry().data()))
        s.set("window/state", bytes(self.window.saveState(LAYOUT_VERSION).data()))
        s.set("window/central_tab", self.tabs.currentIndex())

    def reset(self) -> None:
        self.window.restoreState(self._default_state, LAYOUT_VERSION)
        for d in self.docks.values():
            d.show()
        self.size_docks()
