"""The window fits a laptop: its minimum size is at most 1024×640 (every tab and dock scrolls what
does not fit), a 1280×720 window keeps its fields reachable, and a saved geometry or layout that
no longer fits the screen is not restored. Before issue 15 the minimum was 971×917, the side
docks cut fields off at 1280 px with no scroll bar, and that clipped layout came back."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QScrollArea, QWidget


def test_minimum_size_fits_a_laptop(make_window, qtbot):
    win = make_window()
    hint = win.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 640, hint
    win.resize(1280, 720)
    qtbot.waitUntil(lambda: win.width() <= 1280, timeout=3000)
    # every dock scrolls both ways, so nothing is cut off without a way to reach it
    for key, dock in win.placement.docks.items():
        w = dock.widget()
        if isinstance(w, QScrollArea):
            assert w.horizontalScrollBarPolicy().name != "ScrollBarAlwaysOff", key
    # the central tabs scroll too (their content never sets the window's minimum size)
    for key in ("monitor", "data", "runs", "playground", "export"):
        assert win.panels[key].findChild(QScrollArea) is not None, key


def test_a_saved_geometry_larger_than_the_screen_is_not_restored(make_window, qtbot):
    win = make_window()
    screen = win.screen().availableGeometry()
    win.resize(screen.width() * 2, screen.height() * 2)  # saved on a much larger monitor
    qtbot.wait(50)
    win.shutdown()  # closing saves the geometry and the layout
    again = make_window()
    assert again.width() <= screen.width() and again.height() <= screen.height()


def test_a_saved_layout_whose_docks_squeeze_the_tabs_is_reset(make_window, qtbot):
    from PySide6.QtCore import Qt

    win = make_window()
    screen = win.screen().availableGeometry()
    win.resize(screen.width(), screen.height())
    qtbot.wait(50)
    docks = win.placement.docks
    # side docks dragged wide (on a bigger screen, say): the central tabs are left a sliver
    win.resizeDocks([docks["model"], docks["estimate"]], [screen.width() // 2] * 2, Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: not win.placement.layout_fits(), timeout=3000)
    win.shutdown()  # saved like that
    again = make_window()
    assert again.width() <= screen.width()  # the geometry fits, so only the layout is at fault
    qtbot.waitUntil(again.placement.layout_fits, timeout=3000)


def test_the_layout_version_is_respected(tmp_path):
    from studio.layout import LAYOUT_VERSION

    assert LAYOUT_VERSION >= 3  # Runs moved from the bottom dock to a central tab
    s = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    assert s.value("window/state") is None


def test_no_monitor_plot_is_cut_off_at_1280x720(make_window, qtbot):
    """pyqtgraph lays a title wider than its plot out past the widget's edge: at 1280×720 the
    Memory plot ("Memory — now · peak") lost its right side (axis ticks and curve) with no way to
    see it. Each plot is at least as wide as its title, and all of them fit the tab there."""
    win = make_window()
    win.resize(1280, 720)
    win.placement.size_docks()
    win.placement.show_panel("monitor")
    mon = win.panels["monitor"]
    mon.build_plots()
    qtbot.waitUntil(lambda: win.width() <= 1280, timeout=3000)
    area = mon.findChild(QScrollArea)
    qtbot.waitUntil(lambda: all(p.width() > 0 for p in mon.plots.values()), timeout=3000)
    for key, plot in mon.plots.items():
        title = plot.getPlotItem().titleLabel.item.boundingRect().width()
        assert plot.minimumWidth() > title, key
        assert plot.width() >= plot.minimumWidth(), key  # nothing squeezed below what it needs
    assert area.widget().minimumSizeHint().width() <= area.viewport().width(), "the plots fit without scrolling"


def test_the_preference_monitor_fits_at_1280x720(make_window, qtbot):
    """The walk of 2026-11-30: a DPO run's monitor scrolled sideways at 1280×720: the rewards and
    accuracy plots' titles ("Reward accuracy (chosen > rejected; KTO: the KL estimate)") set
    their minimum widths, so the Peak memory and Epoch tiles and the forgetting line were cut off.
    The titles are short; what they mean is in the plot's tooltip."""
    win = make_window()
    win.resize(1280, 720)
    win.placement.size_docks()
    win.placement.show_panel("monitor")
    mon = win.panels["monitor"]
    mon.build_plots()
    mon.set_preference(True)
    qtbot.waitUntil(lambda: win.width() <= 1280, timeout=3000)
    area = mon.findChild(QScrollArea)
    qtbot.waitUntil(lambda: mon.plots["pref"].isVisible() and mon.plots["pref"].width() > 0, timeout=3000)
    for key in ("rewards", "pref"):
        assert mon.plots[key].toolTip(), key  # the long explanation moved here
    assert area.widget().minimumSizeHint().width() <= area.viewport().width(), "the plots fit without scrolling"


def test_the_side_docks_need_no_sideways_scrolling_at_1280x720(make_window, qtbot):
    """The walk of 2026-11-30: at 1280×720 the Training dock scrolled sideways: “GPUs: none found:
    the run trains on the CPU” (Where to run) did not wrap, so every field's right edge (the
    drop-downs' arrows, the “…” beside “Runs in”) was cut off at the dock's edge."""
    win = make_window()
    win.resize(1280, 720)
    win.placement.size_docks()
    qtbot.waitUntil(lambda: win.width() <= 1280, timeout=3000)
    where = win.panels["training"].findChild(QWidget, "section:where_to_run")
    qtbot.waitUntil(lambda: "Looking" not in where.gpu_note.text(), timeout=30_000)  # the longest text
    for key in ("model", "method", "training"):
        dock = win.placement.docks[key]
        dock.raise_()
        area = dock.widget()
        qtbot.waitUntil(lambda area=area: area.viewport().width() > 0 and area.isVisible(), timeout=3000)
        assert area.widget().minimumSizeHint().width() <= area.viewport().width(), key
