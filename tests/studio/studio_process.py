"""The real studio process (``studio.app.main``, as `make run` starts it) for the relaunch tests, with
the engine child replaced by tests/studio/fake_engine.py (fast, same event protocol). A timer
plays the user:

    python tests/studio/studio_process.py start-keep MODEL DATA -- --demo
        opens the user's model and data in the form, starts a run, and at step 3 closes the window
        with "Keep running" (prints ``pid N`` and ``run DIR``);
    python tests/studio/studio_process.py start-stop MODEL DATA -- --demo
        as start-keep, but closes with "Stop and save" (prints the helper processes' pids too);
    python tests/studio/studio_process.py reattach PID -- --demo
        waits until the monitor follows engine PID again, prints what it shows (``curve N file M
        first S``, ``data PATH``), then closes with "Keep running" again.

The exit status is studio.app.main's (0 when the app closed cleanly).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
FAKE = ROOT / "tests" / "studio" / "fake_engine.py"


def _window():
    from PySide6.QtWidgets import QApplication

    from studio.main_window import MainWindow

    return next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()), None)


def _poll(fn, interval_ms: int = 50):
    """Call ``fn()`` every interval until it returns True (a QTimer owned by the app)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    timer = QTimer(QApplication.instance())
    timer.setInterval(interval_ms)

    def tick():
        if fn():
            timer.stop()

    timer.timeout.connect(tick)
    timer.start()
    return timer


def start_keep(model: str, data: str, choice: str = "keep"):
    state = {"set": False, "started": False}

    def step():
        win = _window()
        if win is None:
            return False
        if not state["set"]:
            # what the user does first: their own model and data file, in the window
            win.panels["model"].source.setCurrentText(model)
            win.panels["data"].path.setText(data)
            state["set"] = True
            return False
        if not state["started"]:
            if win.act_start.isEnabled() and win.panels["model"].info is not None:
                win.act_start.trigger()
                state["started"] = True
            return False
        sup = win.runs.supervisor
        if sup.state == "running" and win.panels["monitor"].curve_points("loss") >= 3 or \
                win.panels["monitor"].series["loss"].n >= 3:
            print(f"pid {sup.pid}", flush=True)
            print(f"run {sup.run_dir}", flush=True)
            from studio import tasks

            helpers = [h.process.pid for h in tasks._helpers.values() if h.process is not None]
            print(f"helpers {' '.join(map(str, helpers))}", flush=True)
            win.ask_close_during_run = lambda: choice
            win.close()  # "stop": the window closes by itself once the engine has saved
            return True
        return False

    return _poll(step)


def reattach(pid: int):
    from engine.events import read_events

    def step():
        win = _window()
        if win is None:
            return False
        sup = win.runs.supervisor
        if not (sup.attached and sup.pid == pid):
            return False
        mon = win.panels["monitor"]
        in_file = sum(1 for e in read_events(Path(sup.run_dir) / "events.jsonl") if e.get("event") == "step")
        if mon.series["loss"].n < in_file - 2:  # the replay has not caught up yet
            return False
        x, _ = mon.series["loss"].data()
        print(f"curve {mon.series['loss'].n} file {in_file} first {int(x[0]) if len(x) else -1}", flush=True)
        print(f"state {sup.state}", flush=True)
        print(f"data {win.config_model.config.data.path}", flush=True)
        win.ask_close_during_run = lambda: "keep"
        win.close()
        return True

    return _poll(step)


def main(argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    mode, rest = argv[0], argv[1:]
    own, app_args = (rest[: rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
    from PySide6.QtWidgets import QApplication

    import studio.supervisor as supervisor

    supervisor.engine_command = lambda run_yaml: [sys.executable, str(FAKE), "train", str(run_yaml)]
    app = QApplication([sys.argv[0]])  # studio.app.main uses this one
    if mode in ("start-keep", "start-stop"):
        keep = start_keep(*own, choice="keep" if mode == "start-keep" else "stop")
    else:
        keep = reattach(int(own[0]))
    deadline = time.monotonic() + 240

    def give_up():
        if time.monotonic() > deadline:
            print("timed out", flush=True)
            os._exit(3)
        return False

    guard = _poll(give_up, 500)
    from studio.app import main as studio_main

    code = studio_main(app_args)
    del keep, guard, app
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
