"""Screenshot of the Data tab's one-click "Set Training › Task to dpo" at 1280×720 (issue 18).

    QT_QPA_PLATFORM=offscreen python scripts/shot_data_task.py docs/screenshots

On a tiny Llama-style model built offline (nothing downloaded): a preference file (prompt,
chosen, rejected) while Training › Task is sft → the Report tab refuses it for SFT and offers
the task (and, for SFT, the chosen answers); writes data-task-fix-1280x720.png. Then the fix is
clicked and the script checks that the task is dpo and Start is enabled (exit 1 otherwise).
Everything else goes to a temporary folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shot_data_export import ROOT, isolated_app, shot, wait


def main(out: Path) -> int:
    tmp, app = isolated_app("shot-task-")
    from engine.config import RunConfig
    from engine.testing import make_tiny_model
    from studio import tasks
    from studio.main_window import MainWindow
    from studio.settings import Settings

    model = make_tiny_model(tmp / "tiny-model")
    pairs = tmp / "data" / "pairs.jsonl"
    pairs.parent.mkdir()
    facts = [("What is the capital of France?", "Ahoy! Paris, arr!", "Paris."),
             ("What is two plus two?", "Ahoy! Four, matey!", "Four."),
             ("What colour is the sky?", "Ahoy! Blue, arr!", "Blue.")] * 8
    pairs.write_text("".join(json.dumps({"prompt": q, "chosen": c, "rejected": r}) + "\n" for q, c, r in facts),
                     encoding="utf-8")
    cfg = RunConfig()
    cfg.model.name_or_path = str(model)
    cfg.data.path = str(pairs)
    cfg.data.max_length = 64
    cfg.output_dir = str(tmp / "runs" / "tiny")
    win = MainWindow(settings=Settings(), initial=cfg, reattach=False)
    win.show()
    try:
        win.placement.show_panel("data")
        view = win.panels["data"].report
        view.tabs.setCurrentIndex(1)
        wait(lambda: view.fix_button("train.task") is not None, "the report offers the task")
        wait(lambda: not win.panels["data"]._job.busy, "the preview is shown")
        shot(win, out / "data-task-fix-1280x720.png")
        view.fix_button("train.task").click()
        wait(lambda: win.config_model.config is not None and win.config_model.config.train.task == "dpo",
             "the task is dpo")
        wait(lambda: view.result.get("stage") == "preference", "the pairs are read as DPO will")
        wait(win.act_start.isEnabled, "Start is enabled", timeout=120)
    finally:
        win.shutdown()
        win.deleteLater()
        tasks.shutdown()
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")))
