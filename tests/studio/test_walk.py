"""The scripted newcomer's walk (scripts/walk.py) runs as part of the tests: the real window, driven
with QTest, on the tiny model, through every path of issue 15 (data and mapping, every method group,
the estimate, Start, Stop, Resume, close with Keep running, relaunch, Playground with a checkpoint,
the three exports, a comparison of two runs), asserting at each step what a user would check.
Under a real X server (Xvfb) when there is one, else Qt's offscreen platform."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_newcomers_walk(tmp_path):
    shots = tmp_path / "shots"
    cmd = [sys.executable, str(ROOT / "scripts" / "walk.py"), "--shots", str(shots), "--one-size"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *cmd]
        env.pop("QT_QPA_PLATFORM", None)
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "walk finished: every check held" in out.stdout
    for view in ("data", "method", "monitor", "playground", "export", "runs"):
        assert (shots / f"{view}-1280x720.png").stat().st_size > 10_000, view
