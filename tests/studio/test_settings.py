"""The typed settings table converts whatever QSettings hands back."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from studio.settings import KEYS, MAX_RECENT, Settings


def test_typed_round_trip(tmp_path):
    q = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    s = Settings(q)
    s.set("monitor/smoothing", 42)
    s.set("monitor/log_scale", True)
    s.set("recent/runs", ["/a"])
    s.set("window/geometry", b"\x00\x01")
    s.sync()
    s2 = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert s2.get("monitor/smoothing") == 42
    assert s2.get("monitor/log_scale") is True
    assert s2.get("recent/runs") == ["/a"]
    assert s2.get("window/geometry") == b"\x00\x01"


def test_defaults_and_corrupt_values(tmp_path):
    q = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    q.setValue("monitor/smoothing", "not a number")
    s = Settings(q)
    assert s.get("monitor/smoothing") == KEYS["monitor/smoothing"].default
    assert s.get("active/run_dir") == ""


def test_recent_runs_are_deduplicated_and_capped(tmp_path):
    s = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    for i in range(MAX_RECENT + 5):
        s.add_recent_run(f"/runs/{i}")
    s.add_recent_run("/runs/3")
    runs = s.get("recent/runs")
    assert runs[0] == "/runs/3" and len(runs) == MAX_RECENT and runs.count("/runs/3") == 1
