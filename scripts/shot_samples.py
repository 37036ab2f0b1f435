"""Screenshots of a finished run in the studio: the Samples tab and the monitor (README, docs).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/shot_samples.py RUN_DIR docs/screenshots [OTHER_RUN …]

RUN_DIR is a run that evaluated during training (the demo recipe evaluates every 5 steps:
`peft-studio demo` or `peft-studio train` with `engine.demo.demo_config()`). The window opens the
run from its events.jsonl, as "Open run folder…" does, and saves samples.png (the Samples tab)
and monitor-forgetting.png (the monitor with its warnings and the forgetting check). With other
run folders after the output folder, also monitor-overlay.png: the runs overlay (Runs › Overlay
in monitor) of those runs over RUN_DIR.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(run_dir: str, out: str, others: list[str] | None = None) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.config import RunConfig
    from studio.main_window import MainWindow
    from studio.settings import Settings

    app = QApplication.instance() or QApplication([])
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    win = MainWindow(settings=Settings(), initial=RunConfig.load(Path(run_dir) / "run.yaml"), reattach=False)
    win.resize(1480, 940)
    win.show()

    def shoot(name: str, tab: str, docks: bool) -> bool:
        # The Samples grid wants the window's width: its docks are closed for that shot, as a
        # person reading the answers would (View menu).
        for key, dock in win.placement.docks.items():
            dock.setVisible(docks or key == "log")
        win.placement.show_panel(tab)
        for _ in range(20):
            QApplication.processEvents()
        if tab == "monitor":
            win.panels["monitor"].refresh_all()
        QApplication.processEvents()
        path = out_dir / name
        ok = win.grab().save(str(path))
        print(("saved " if ok else "could not save ") + str(path))
        return ok

    def finish() -> None:
        ok = shoot("samples.png", "samples", False) and shoot("monitor-forgetting.png", "monitor", True)
        if ok and others:
            monitor = win.panels["monitor"]
            monitor.overlay(others)
            for _ in range(200):  # the curves are read off the UI thread
                QApplication.processEvents()
                if len(monitor.overlays) == len(others):
                    break
                time.sleep(0.05)
            ok = shoot("monitor-overlay.png", "monitor", True)
        win.shutdown()
        app.exit(0 if ok else 1)

    def attach() -> None:
        win.runs.attach(run_dir)
        QTimer.singleShot(6000, finish)  # events replayed, plots built

    QTimer.singleShot(2500, attach)
    QTimer.singleShot(120_000, lambda: app.exit(2))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(ROOT / "docs" / "screenshots"),
                  sys.argv[3:]))
