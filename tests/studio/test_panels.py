"""The panel list: every panel satisfies the Panel protocol and is placed; one that fails to build
stops the window with its name (never a silently missing tab); a new panel is one class + one line."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel, QWidget

from studio.panels.base import Area, Panel, PanelDefaults, Studio
from studio.panels.registry import PANELS, PanelBuildError, build_panels


def test_every_listed_panel_is_built_and_placed(make_window):
    win = make_window()
    assert list(win.panels) == [cls.key for cls in PANELS]
    for cls in PANELS:
        panel = win.panels[cls.key]
        assert isinstance(panel, Panel) and type(panel) is cls
        if cls.area == Area.CENTRAL:
            i = win.placement.tabs.indexOf(panel)
            assert i >= 0 and win.placement.tabs.tabText(i) == cls.title
        else:
            dock = win.placement.docks[cls.key]
            assert dock.objectName() == f"dock-{cls.key}" and dock.windowTitle() == cls.title
            assert dock.widget() is panel or dock.widget().widget() is panel  # scrolled or not
    assert [win.placement.tabs.tabText(i) for i in range(win.placement.tabs.count())] == \
        ["Monitor", "Data", "Runs", "Playground", "Export"]


class _Broken(QWidget, PanelDefaults):
    key, title, area = "broken", "Broken", Area.CENTRAL

    @classmethod
    def create(cls, studio: Studio):
        raise KeyError("a bug in the panel")


class _NotAPanel:
    key, title, area = "odd", "Odd", Area.LEFT

    @classmethod
    def create(cls, studio):
        return cls()


def test_a_panel_that_fails_to_build_is_an_error_naming_it():
    with pytest.raises(PanelBuildError, match="Broken panel .*_Broken.* could not be built: KeyError") as info:
        build_panels(None, [_Broken])
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(PanelBuildError, match="does not satisfy the Panel protocol"):
        build_panels(None, [_NotAPanel])


class _Plain(QWidget, PanelDefaults):
    key, title, area = "plain", "Plain", Area.CENTRAL

    @classmethod
    def create(cls, studio: Studio):
        return cls()


def test_duplicate_keys_are_refused(qtbot):
    assert list(build_panels(None, [_Plain])) == ["plain"]
    with pytest.raises(PanelBuildError, match="duplicate panel key 'plain'"):
        build_panels(None, [_Plain, _Plain])


def test_the_window_does_not_open_without_a_broken_panel(qtbot, monkeypatch):
    from studio import panels
    from studio.main_window import MainWindow
    from studio.settings import Settings

    monkeypatch.setattr(panels.registry, "PANELS", [*PANELS, _Broken])
    with pytest.raises(PanelBuildError, match="Broken"):
        MainWindow(settings=Settings(), reattach=False)


class Notes(QLabel, PanelDefaults):
    """A panel written for this test only: counts the steps of the run it hears about."""

    key, title, area = "notes", "Notes", Area.BOTTOM

    @classmethod
    def create(cls, studio: Studio):
        panel = cls("no steps yet")
        studio.runs.sig_event.connect(panel.on_event)
        return panel

    def on_event(self, ev):
        if ev.get("event") == "step":
            self.setText(f"step {ev['step']}")


def test_adding_a_panel_is_one_class_and_one_line(make_window, monkeypatch, qtbot, tmp_path, fake_engine):
    from engine.config import RunConfig
    from studio import panels
    from studio.supervisor import RunSupervisor

    monkeypatch.setattr(panels.registry, "PANELS", [*PANELS, Notes])  # "one line in the list"
    win = make_window(supervisor=RunSupervisor(command=fake_engine(steps=4, delay=0.01)))
    notes = win.panels["notes"]
    assert win.placement.docks["notes"].windowTitle() == "Notes"
    assert any(a.text() == "Notes" for a in win.menuBar().actions()[2].menu().actions())  # View menu
    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "runs" / "notes")
    win.config_model.set_config(cfg)
    with qtbot.waitSignal(win.runs.sig_finished, timeout=20_000):
        win.runs.start()
    qtbot.waitUntil(lambda: notes.text() == "step 4", timeout=3000)
