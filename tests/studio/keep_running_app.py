"""A real studio process for the close-with-"Keep running" test: opens the window on the fake
engine, starts a run, closes the window with "Keep running" at step 3, and exits as the app does.

    python tests/studio/keep_running_app.py TMP_DIR      (prints ``pid N`` of the engine)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(tmp: Path) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.config import RunConfig
    from studio import tasks
    from studio.main_window import MainWindow
    from studio.settings import Settings
    from studio.supervisor import RunSupervisor, wait_orphans

    app = QApplication([])
    fake = ROOT / "tests" / "studio" / "fake_engine.py"
    sup = RunSupervisor(command=lambda run_yaml: [sys.executable, str(fake), "train", run_yaml])
    settings = Settings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    win = MainWindow(settings=settings, reattach=False, supervisor=sup)
    cfg = RunConfig()
    cfg.output_dir = str(tmp / "run")
    win.config_model.set_config(cfg)
    win.show()

    def on_event(ev):
        if ev.get("event") == "step" and ev.get("step") == 3 and win.isVisible():
            print(f"pid {sup.pid}", flush=True)
            win.ask_close_during_run = lambda: "keep"
            win.close()
            QTimer.singleShot(50, app.quit)

    win.runs.sig_event.connect(on_event)
    QTimer.singleShot(0, win.runs.start)
    QTimer.singleShot(120_000, lambda: app.exit(3))
    code = app.exec()
    # what studio.app.main does after the event loop
    tasks.shutdown()
    wait_orphans()
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
