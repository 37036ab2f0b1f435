"""Screenshots of the Data tab's report and the Export tab's formats at 1280×720 (issues 13, 17).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/shot_data_export.py docs/screenshots
    QT_QPA_PLATFORM=offscreen python scripts/shot_data_export.py /tmp/shots

On a tiny Llama-style model built offline (nothing downloaded): two data sources (a chat file
with a broken line, an alpaca file with a column no format reads) → the Report tab with both
sources, the skipped line and the "Skip the 1 bad records" fix; then an adapter run → the Export
tab's GGUF page with every type's size, and an Ollama export with its verification sentence and
Open folder. Writes data-report-1280x720.png, export-formats-1280x720.png and
export-done-1280x720.png. Everything else goes to a temporary folder.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZE = (1280, 720)


def pump(seconds: float) -> None:
    from PySide6.QtCore import QCoreApplication, QEventLoop

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)


def wait(cond, what: str, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        pump(0.05)
    raise SystemExit(f"timed out waiting until {what}")


def shot(win, path: Path) -> None:
    from studio.smoke import save_screenshot

    win.resize(*SIZE)
    win.placement.size_docks()
    pump(0.8)
    save_screenshot(win, str(path))


def isolated_app(prefix: str):
    """(a temporary folder, the QApplication) with the settings, run index and caches in that
    folder, so a screenshot never reads or writes the user's own."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    for k, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("PEFT_STUDIO_HOME", "studio"),
                   ("PEFT_STUDIO_CACHE", "cache")):
        os.environ[k] = str(tmp / sub)
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "config"))
    return tmp, QApplication.instance() or QApplication([])


def main(out: Path) -> int:
    tmp, app = isolated_app("shot-de-")
    from engine.config import RunConfig
    from engine.export.testing import make_adapter_run
    from engine.testing import make_tiny_model
    from studio import tasks
    from studio.main_window import MainWindow
    from studio.settings import Settings

    model = make_tiny_model(tmp / "tiny-model")
    data = tmp / "data"
    data.mkdir()
    chat = data / "chat.jsonl"
    pairs = [("What is the capital of France?", "Paris."), ("What is two plus two?", "Four."),
             ("What colour is the sky?", "Blue."), ("Name a fruit.", "An apple.")] * 5
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
             for q, a in pairs]
    lines.insert(6, '{"messages": [{"role": "user", "content": "unfinished')
    chat.write_text("\n".join(lines) + "\n", encoding="utf-8")
    alpaca = data / "alpaca.jsonl"
    alpaca.write_text("".join(json.dumps({"instruction": f"Add {i} and {i}.", "input": "", "output": f"{2 * i}",
                                          "source_url": f"https://example.org/{i}"}) + "\n" for i in range(30)),
                      encoding="utf-8")
    cfg = RunConfig()
    cfg.model.name_or_path = str(model)
    cfg.data.sources = [{"path": str(chat), "weight": 1}, {"path": str(alpaca), "weight": 2}]
    cfg.data.max_length = 64
    cfg.output_dir = str(tmp / "runs" / "tiny")
    win = MainWindow(settings=Settings(), initial=cfg, reattach=False)
    win.resize(*SIZE)
    win.show()
    try:
        win.placement.show_panel("data")
        data_panel = win.panels["data"]
        data_panel.report.tabs.setCurrentIndex(1)
        wait(lambda: data_panel.report.result.get("stage") in ("report", "error"), "the data report is complete")
        wait(lambda: not data_panel._job.busy, "the preview is shown")
        shot(win, out / "data-report-1280x720.png")

        run = make_adapter_run(tmp / "runs" / "tiny-lora", model, "lora", seed=1)
        win.placement.show_panel("export")
        ex = win.panels["export"]
        got = []
        ex.sig_choices.connect(got.append)
        ex.picker.settings.set("recent/runs", [str(run)])
        ex.picker.refresh()
        wait(lambda: ex.picker.combo.count() == 1, "the run is listed")
        ex._picked = True
        ex.picker.follow(str(run))
        wait(lambda: got, "the sizes are shown")
        ex.mode.setCurrentIndex(ex.mode.findData("gguf"))
        ex.gguf_type.setCurrentText("q4_k_m")
        shot(win, out / "export-formats-1280x720.png")

        ex.mode.setCurrentIndex(ex.mode.findData("ollama"))
        ex.format_pages["ollama"].option.setCurrentText("q8_0")
        ex.start_export()
        wait(lambda: not ex.busy, "the Ollama export is done")
        shot(win, out / "export-done-1280x720.png")
    finally:
        win.shutdown()
        win.deleteLater()
        tasks.shutdown()
        pump(0.2)
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")))
