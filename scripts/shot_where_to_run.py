"""Screenshot of the studio's "Where to run" section after writing a cluster script (README).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/shot_where_to_run.py docs/screenshots/where-to-run.png

Opens the window on the demo configuration, chooses a cluster of 2 nodes × 8 GPUs with FSDP,
presses "Write cluster script…" and saves the section once the script is shown.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(path: str) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.config import RunConfig
    from studio.main_window import MainWindow
    from studio.settings import Settings

    app = QApplication.instance() or QApplication([])
    cfg = RunConfig()
    cfg.output_dir = str(Path(tempfile.mkdtemp(prefix="where-")) / "llama-fsdp")
    win = MainWindow(settings=Settings(), initial=cfg, reattach=False)
    win.resize(1480, 940)
    win.show()
    where = win.panels["training"].where
    where.cluster.setChecked(True)
    where.nodes.setValue(2)
    where.gpus_per_node.setValue(8)
    where.partition.setText("gpu")
    where.time_limit.setText("12:00:00")
    where.strategy.setCurrentIndex(where.strategy.findData("fsdp"))

    def shoot(_path_written: str) -> None:
        QTimer.singleShot(500, lambda: finish())

    def finish() -> None:
        where.script_view.setMinimumHeight(330)
        QApplication.processEvents()
        ok = where.grab().save(path)
        print(("saved " if ok else "could not save ") + path)
        win.shutdown()
        app.exit(0 if ok else 1)

    where.sig_script.connect(shoot)
    QTimer.singleShot(1500, lambda: where.write_script())
    QTimer.singleShot(120_000, lambda: app.exit(2))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs" / "screenshots" / "where-to-run.png")))
