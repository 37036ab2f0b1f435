"""A newcomer's walk through the real studio window, scripted (issue 15): every path a person takes,
with what they would check at each step asserted and a screenshot saved.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/walk.py --shots docs/screenshots
    python scripts/walk.py --shots /tmp/shots            (QT_QPA_PLATFORM=offscreen works too)

It drives the real MainWindow with QTest (clicks and keys), on a tiny Llama-style model built
offline and small data files, with the real engine in child processes:

open data → a file whose columns need mapping (Start is off, the message names the mapping) →
map them → another file keeps its own (no) mapping → pick a method of every group (BitFit is
"not for this model" and gates Start; IA³'s Auto picks are the engine's) → the estimate →
Start → Stop → Resume (steps 1..N kept) → close with "Keep running" → relaunch (the demo is not
forced on the saved setup; the monitor re-attaches with the whole curve) → Playground with a
checkpoint → Export adapter, merged and GGUF → a second run → compare the two runs.

Everything it writes goes to a temporary folder (settings, runs, the studio's data); screenshots
go to ``--shots`` as ``<view>-<W>x<H>.png`` at 1280×720 and 1600×1000. Exit status 0 when every
check held; else 1 with the failed check on stderr (and a ``failed-*.png`` of the window).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = [(1280, 720), (1600, 1000)]
STEP_TIMEOUT_S = 600  # a child imports torch+transformers+peft; a busy machine is slow
WAIT_S = 120  # the least any wait allows (a window's jobs run in helper processes on a busy machine)


class WalkFailed(AssertionError):
    pass


class Walk:
    def __init__(self, shots: Path, tmp: Path, sizes=SIZES, steps: int = 400):
        self.shots, self.tmp, self.sizes, self.steps = shots, tmp, sizes, steps
        self.t0 = time.monotonic()
        self.win = None

    # -- helpers -------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"walk [{time.monotonic() - self.t0:6.1f} s] {msg}", flush=True)

    def pump(self, seconds: float = 0.05) -> None:
        from PySide6.QtCore import QCoreApplication, QEventLoop

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.005)

    def wait(self, cond, what: str, timeout: float = WAIT_S) -> None:
        """Process events until ``cond()`` holds (QTest.qWaitFor's loop: PySide6 lacks it). Every
        state the walk checks after an action is waited for, never assumed after a fixed pause;
        the timeouts are generous because a shared machine can be very slow."""
        end = time.monotonic() + max(timeout, WAIT_S)
        while time.monotonic() < end:
            if cond():
                return
            self.pump(0.05)
        raise WalkFailed(f"timed out after {max(timeout, WAIT_S):.0f} s waiting until {what}")

    def wait_check(self, cond, what: str, timeout: float = WAIT_S) -> None:
        """``check`` for a state that follows an action asynchronously (a job, a queued signal)."""
        self.wait(cond, what, timeout)
        self.log(f"  ✓ {what}")

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise WalkFailed(what)
        self.log(f"  ✓ {what}")

    def shot(self, name: str) -> None:
        """The window at each size, as a user would see it (the docks sized for that window)."""
        from studio.smoke import save_screenshot

        win = self.win
        before = win.size()
        for w, h in self.sizes:
            win.resize(w, h)
            win.placement.size_docks()
            self.pump(0.6)
            win.panels["monitor"].refresh_all()
            save_screenshot(win, str(self.shots / f"{name}-{w}x{h}.png"))
        win.resize(before)
        self.pump(0.2)

    def click(self, widget) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        label = getattr(widget, "text", lambda: "")()
        self.wait(widget.isEnabled, f"“{label}” can be clicked")
        self.log(f"  ✓ “{label}” can be clicked")
        QTest.mouseClick(widget, Qt.MouseButton.LeftButton)
        self.pump(0.1)

    def type_into(self, line_edit, text: str) -> None:
        from PySide6.QtTest import QTest

        line_edit.setFocus()
        line_edit.selectAll()
        QTest.keyClicks(line_edit, text)
        self.pump(0.1)

    def button(self, action):
        """The toolbar button of a QAction (what the user clicks)."""
        from PySide6.QtWidgets import QToolBar

        bar = self.win.findChild(QToolBar, "toolbar-main")
        return bar.widgetForAction(action)

    # -- the walk ------------------------------------------------------------------------------
    def make_files(self) -> tuple[Path, Path, Path]:
        from engine.testing import make_tiny_model

        model = make_tiny_model(self.tmp / "tiny-model")
        data = self.tmp / "data"
        data.mkdir(exist_ok=True)
        qa = data / "pirate-qa.jsonl"  # columns detection cannot place: they need a mapping
        pairs = [("What is the capital of France?", "Ahoy! Paris, arr!"), ("What is two plus two?", "Ahoy! Four!"),
                 ("What colour is the sky?", "Ahoy! Blue, matey!"), ("Name a fruit.", "Ahoy! An apple, arr!"),
                 ("Say hello.", "Ahoy there!"), ("What is the capital of Italy?", "Ahoy! Rome, arr!")] * 6
        qa.write_text("".join(json.dumps({"ask": q, "reply": a}) + "\n" for q, a in pairs))
        chat = data / "chat.jsonl"  # a valid file of another format: opening it must not inherit qa's mapping
        chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                         {"role": "assistant", "content": a}]}) + "\n"
                                for q, a in pairs))
        return model, qa, chat

    def open_window(self, settings, initial=None):
        from studio.main_window import MainWindow

        win = MainWindow(settings=settings, initial=initial, reattach=True)
        win.resize(*self.sizes[-1])
        win.show()
        self.win = win
        self.wait(win.plots_ready, "the plots are built", 60)
        return win

    def run(self) -> None:
        from PySide6.QtCore import QSettings

        from studio.app import launch_config
        from studio.settings import Settings

        model, qa, chat = self.make_files()
        settings = Settings(QSettings(str(self.tmp / "settings.ini"), QSettings.Format.IniFormat))
        self.log("launch (first time, --demo: the demo is preselected)")
        initial = launch_config(settings, demo=True)
        self.check(initial is not None and initial.model.name_or_path == "demo",
                   "a first launch with --demo preselects the demo")
        win = self.open_window(settings, initial)
        self.check("demo data" in win.panels["training"].plan.text(), "the line beside Start says it is the demo data")
        self.step_model_and_data(win, model, qa, chat)
        self.step_methods(win)
        self.step_estimate(win)
        run_dir = self.step_start_stop_resume(win)
        win = self.step_keep_running_and_relaunch(settings, run_dir, qa)
        self.step_playground(win, run_dir)
        self.step_export(win, run_dir)
        self.step_compare(win, run_dir)
        win.shutdown()
        self.pump(0.3)
        self.log("walk finished: every check held")

    def step_model_and_data(self, win, model: Path, qa: Path, chat: Path) -> None:
        self.log("choose the model (a local folder) and open a data file whose columns need mapping")
        mp, data = win.panels["model"], win.panels["data"]
        win.placement.show_panel("model")
        self.type_into(mp.source.lineEdit(), str(model))
        self.wait(lambda: mp.info is not None and mp.info.get("source"), "the model is inspected", 300)
        win.placement.show_panel("data")
        self.type_into(data.path, str(qa))
        self.wait(lambda: data.previewing(str(qa)), "the preview has read the file", 300)
        self.check(data.preview.rejected, "the preview refuses a file whose columns it cannot place")
        self.wait(lambda: not win.act_start.isEnabled(), "Start is off for the refused file", 10)
        status = win.status.validity.text()
        self.check("data." not in status and ("“Format”" in status or "“Column mapping”" in status
                                              or "“Data file”" in status),
                   f"the status bar names the control, not a run-file key: {status!r}")
        self.check("report it" not in status.lower(), "no 'report it' for the user's own data")
        self.check(win.status.go.isVisible(), "the status bar offers to go to the control")

        self.log("map the columns: format prompt/completion, prompt ← ask, completion ← reply")
        fmt = data.form.editors["format"].widget
        fmt.setCurrentIndex(fmt.findData("prompt_completion"))
        self.wait(lambda: "prompt" in data.mapping.combos, "the mapping offers prompt and completion", 300)
        for role, col in (("prompt", "ask"), ("completion", "reply")):
            combo = data.mapping.combos[role]
            combo.setCurrentIndex(combo.findData(col))
            self.pump(0.1)
        self.wait(lambda: data.previewing(str(qa)) and data.preview.format == "prompt_completion"
                  and bool(data.preview.rows) and not data.preview.rejected, "the mapped file previews", 300)
        self.check(data.mapping.describe() == "prompt ← ask, completion ← reply",
                   f"the mapping is shown by name: {data.mapping.summary.text()!r}")

        self.log("open another file: it keeps its own (no) mapping")
        self.type_into(data.path, str(chat))
        self.wait(lambda: data.previewing(str(chat)) and data.preview.format == "messages" and bool(data.preview.rows),
                  "the chat file previews, detected, with no error", 300)
        self.wait_check(lambda: data.mapping.mapping == {} and not win.config_model.config.data.columns,
                        "file A's mapping does not touch file B")
        self.type_into(data.path, str(qa))
        self.wait(lambda: data.previewing(str(qa)) and data.preview.format == "prompt_completion"
                  and bool(data.preview.rows), "file A previews with its mapping again", 300)
        self.wait_check(lambda: win.config_model.config.data.columns == {"prompt": "ask", "completion": "reply"},
                        "file A's mapping comes back with file A")
        plan = win.panels["training"].plan
        self.wait_check(lambda: "pirate-qa.jsonl" in plan.text() and "demo data" not in plan.text(),
                        "the line beside Start names the user's data file")
        self.shot("data")

    def step_methods(self, win) -> None:
        from engine.methods import PARAMS
        from studio.panels.method import GROUPS, method_group

        self.log("pick a method of every group")
        mp = win.panels["method"]
        win.placement.show_panel("method")
        combo = mp.combo
        from engine.methods import get_method

        for key, heading in GROUPS:
            names = [n for n in mp.method_names() if method_group(get_method(n)) == key]
            self.check(bool(names), f"the group “{heading}” lists methods")
            combo.setCurrentIndex(combo.findData(names[0]))
            self.wait_check(lambda n=names[0]: mp.current == n and mp.form.klass is PARAMS[n],
                            f"{heading}: {names[0]}'s own parameters are shown")
        ia3 = combo.findData("ia3")
        combo.setCurrentIndex(ia3)
        self.wait_check(lambda: mp.targets.note.text() == "Auto picks: k_proj, v_proj, down_proj",
                        "IA³'s Auto picks are what the engine trains (k_proj, v_proj, down_proj)")
        combo.setCurrentIndex(combo.findData("bitfit"))
        # (the estimator may refuse BitFit first; the model's own inspection then says it plainly)
        self.wait(lambda: not win.act_start.isEnabled() and "BitFit is not for this model" in win.act_start.toolTip(),
                  "Start is off for BitFit on a model without biases, and its tooltip says why", 120)
        self.wait_check(lambda: "“Method”" in win.status.validity.text(), "the status bar names the Method control")
        combo.setCurrentIndex(combo.findData("lora"))
        mp.targets.radios["all-linear"].setChecked(True)
        self.pump(0.2)
        tp = win.panels["training"].form.editors
        win.panels["training"].form.editors["lr"].widget.setText("5")
        self.wait(lambda: "train.lr" in win.config_model.warnings, "a learning rate of 5 is questioned")
        self.wait_check(lambda: "train.lr" not in win.config_model.errors
                        and bool(win.panels["training"].form.warning_text("lr")),
                        "the learning rate's warning is shown under the field, as a warning, not an error")
        tp["lr"].widget.setText("0.003")
        tp["max_steps"].widget.setValue(self.steps)
        tp["batch_size"].widget.lineEdit().setText("-4")
        tp["batch_size"].widget.interpretText()
        self.wait(lambda: "train.batch_size" in win.config_model.errors, "−4 is marked, not changed")
        self.check(tp["batch_size"].widget.value() == -4, "the spin box keeps −4 visible as invalid")
        tp["batch_size"].widget.setValue(4)
        self.wait(lambda: win.act_start.isEnabled(), "Start is back on once the fields are valid", 300)
        win.placement.docks["method"].raise_()
        self.shot("method")

    def step_estimate(self, win) -> None:
        self.log("the estimate")
        est = win.panels["estimate"]
        mp = win.panels["method"]
        # both panels' jobs done for the settings now shown (not a result for the previous method)
        self.wait(lambda: est.verdict.property("verdict") in ("fits", "tight", "exceeds") and not est.cached
                  and not est._job.busy and not mp._count_job.busy, "the estimate is in", 300)
        self.check("RAM" in est.verdict.text() or "GiB" in est.verdict.text(), f"verdict: {est.verdict.text()!r}")
        self.wait(lambda: "trainable" in mp.count_label.text(), "the method's count is in", 300)
        self.wait_check(lambda: est.counts.values["Trainable"].text().split(" (")[0] in mp.count_label.text(),
                        "the Estimate's Parameters box and the Method panel agree")

    def step_start_stop_resume(self, win) -> str:
        mon = win.panels["monitor"]
        self.log("Start")
        self.check(mon.progress.text() in ("", "0%") or "/ 1 steps" not in mon.progress.text(),
                   "no “0 / 1 steps” before the run")
        self.click(self.button(win.act_start))
        # (the run is long, so that however fast the machine, Stop and Resume find it training)
        self.wait(lambda: win.runs.supervisor.state == "running" and mon.series["loss"].n >= 3,
                  "the run trains (3 steps)", STEP_TIMEOUT_S)
        mon.refresh_all()
        run_dir = str(win.runs.supervisor.run_dir)
        from studio.summary import is_auto_name

        method = win.config_model.config.method.name
        self.check(is_auto_name(Path(run_dir).name) and f"-{method}-pirate-qa-" in Path(run_dir).name,
                   f"the run has a readable name: {Path(run_dir).name}")
        self.check(f"/ {self.steps} steps" in mon.progress.format() or mon.progress.maximum() == self.steps,
                   "the bar counts the run's own steps")
        self.wait_check(lambda: win.status.validity.text().startswith("A run is in progress"),
                        "the status bar does not say Ready to start while training")
        self.wait_check(lambda: mon.tiles["mem"].title.text() == "Peak RSS (CPU)",
                        "the memory tile says what it measures")
        self.shot("monitor")

        self.log("Stop")
        self.click(self.button(win.act_stop))
        self.wait(lambda: win.runs.supervisor.state == "stopped", "the run stopped and saved", STEP_TIMEOUT_S)
        self.check((Path(run_dir) / "adapter" / "adapter_config.json").exists(), "Stop saved the adapter")
        stopped_at = mon.curve_points("loss")
        elapsed_before = mon._elapsed_before + (mon._t_end - mon._t_started)

        self.log("Resume")
        self.wait(lambda: win.act_resume.isEnabled(), "Resume is offered for the stopped run", 10)
        self.click(self.button(win.act_resume))
        self.wait(lambda: win.runs.supervisor.state == "running" and mon.series["loss"].n > stopped_at,
                  "the resumed run trains on", STEP_TIMEOUT_S)
        x, _ = mon.series["loss"].data()
        self.check(list(x[:stopped_at]) == list(range(1, stopped_at + 1)),
                   f"Resume keeps steps 1..{stopped_at} on the plot")
        self.check(mon._elapsed_before >= elapsed_before - 1e-6, "Elapsed continues from the first part")
        self.check(str(win.runs.supervisor.run_dir) == run_dir, "Resume continues the same run folder")
        return run_dir

    def step_keep_running_and_relaunch(self, settings, run_dir: str, qa: Path):
        from engine.events import read_events
        from studio.app import launch_config
        from studio.supervisor import engine_alive

        win = self.win
        pid = win.runs.supervisor.pid
        self.log("close with “Keep running”")
        win.ask_close_during_run = lambda: "keep"
        win.close()
        self.pump(0.3)
        self.check(not win.isVisible() and engine_alive(pid), "the window closed and the engine goes on")
        win.deleteLater()
        self.pump(0.2)

        self.log("relaunch (with --demo, as `make run` does)")
        initial = launch_config(settings, demo=True)
        self.check(initial is None, "--demo does not replace the saved setup")
        win = self.open_window(settings, initial)
        self.check(win.config_model.config.data.path == str(qa), "the form shows the user's data, not the demo's")
        self.wait(lambda: win.runs.supervisor.attached and win.runs.supervisor.pid == pid,
                  "the monitor re-attaches to the running engine", 30)
        mon = win.panels["monitor"]
        steps_now = sum(1 for e in read_events(Path(run_dir) / "events.jsonl") if e.get("event") == "step")
        self.wait(lambda: mon.series["loss"].n >= steps_now - 1, "the whole curve so far is shown", 30)
        x, _ = mon.series["loss"].data()
        self.check(len(x) and x[0] == 1, "the re-attached curve starts at step 1")
        self.check(mon.progress.maximum() == self.steps, f"the bar counts {self.steps} steps")
        self.log("Stop the re-attached run (the studio no longer owns its stdin: a signal asks it)")
        if win.runs.supervisor.state == "running":
            self.click(self.button(win.act_stop))
        self.wait(lambda: win.runs.supervisor.state in ("stopped", "finished"), "the run stopped and saved",
                  STEP_TIMEOUT_S)
        self.check((Path(run_dir) / "adapter" / "adapter_config.json").exists(), "its adapter is saved")
        return win

    def step_playground(self, win, run_dir: str) -> None:
        self.log("Playground with a checkpoint")
        win.placement.show_panel("playground")
        pg = win.panels["playground"]
        from engine.export.runinfo import load_run
        from studio.panels.playground import _signature

        # shown, with the adapters now on disk (the stopped run's last save has been announced)
        self.wait(lambda: pg.run_dir is not None and str(pg.run_dir) == run_dir
                  and pg._signature == _signature(load_run(Path(run_dir))), "the playground shows the run", 30)
        ckpts = [pg.source_combos[0].itemText(i) for i in range(pg.source_combos[0].count())
                 if pg.source_combos[0].itemText(i).startswith("checkpoint-")]
        self.check(bool(ckpts), f"the picker offers the run's checkpoints: {ckpts}")
        pg.choose(ckpts[0], "final")
        pg.max_new_tokens.setValue(8)
        pg.prompt.setPlainText("What is the capital of France?")
        self.click(pg.generate_btn)
        self.wait(lambda: not pg.busy, "both sides have answered", STEP_TIMEOUT_S)
        self.check(not pg.error.isVisible() and all(o.toPlainText() for o in pg.outputs),
                   f"both sides answered ({pg.error.text()!r})")
        self.shot("playground")

    def step_export(self, win, run_dir: str) -> None:
        from engine.export.result import ExportResult  # noqa: F401 (the result type the panel holds)

        self.log("Export the adapter, a merged model and a GGUF file")
        win.placement.show_panel("export")
        ex = win.panels["export"]
        self.wait(lambda: ex.run_dir is not None and str(ex.run_dir) == run_dir, "the export tab shows the run", 30)
        for kind, check in (("adapter", "adapter_config.json"), ("merged", "config.json"), ("gguf", ".gguf")):
            ex.mode.setCurrentIndex(ex.mode.findData(kind))
            if kind == "gguf":
                ex.gguf_type.setCurrentText("f32")
                ex.verify.setChecked(False)
            self.pump(0.1)
            self.click(ex.export_btn)
            self.wait(lambda: not ex.busy, f"the {kind} export is done", STEP_TIMEOUT_S)
            self.check(not ex.error.isVisible(), f"{kind}: no error ({ex.error.text()!r})")
            out = ex.last_result.path
            files = [p.name for p in (out.parent if out.is_file() else out).rglob("*")]
            self.check(any(f.endswith(check) or f == check for f in files), f"{kind}: {check} written in {out}")
            self.check(ex.open_btn.isVisible(), f"{kind}: “Open folder” is offered")
        self.shot("export")

    def step_compare(self, win, run_dir: str) -> None:
        self.log("a second, shorter run with another learning rate, then compare the two")
        tp = win.panels["training"].form.editors
        tp["lr"].widget.setText("0.001")
        tp["max_steps"].widget.setValue(6)
        self.wait(lambda: win.act_start.isEnabled(), "Start is on", 30)
        self.click(self.button(win.act_start))
        self.wait(lambda: win.runs.supervisor.state == "finished", "the second run finishes", STEP_TIMEOUT_S)
        second = str(win.runs.supervisor.run_dir)
        self.check(second != run_dir, "the second run has its own folder")
        win.placement.show_panel("runs")
        runs = win.panels["runs"]
        self.wait(lambda: {run_dir, second} <= {r["run_dir"] for r in runs.rows}
                  or {str(Path(run_dir).resolve()), str(Path(second).resolve())} <= {r["run_dir"] for r in runs.rows},
                  "both runs are listed", 30)
        runs.select([run_dir, second])
        self.wait(lambda: runs.compare.isVisible() and len(runs.compare.runs) == 2, "the comparison is shown", 30)
        labels = [runs.compare.table.verticalHeaderItem(i).text() for i in range(runs.compare.table.rowCount())]
        self.check(any(lab.startswith("Learning rate") for lab in labels) and
                   any(lab.startswith("Max steps") for lab in labels), f"the differing settings are listed: {labels}")
        self.check(not any(lab.startswith(("Batch size", "Output folder")) for lab in labels),
                   "settings that are the same (or the folder) are left out")
        self.wait(lambda: len(runs.compare.points("loss")) == 2 and min(runs.compare.points("loss")) > 0,
                  "both loss curves are overlaid", 30)
        row = next(r for r in runs.rows if Path(r["run_dir"]).resolve() == Path(run_dir).resolve())
        self.check(row["data"] == "pirate-qa.jsonl" and (row.get("duration") or 0) > 0,
                   f"the list has the data file and the duration ({row['data']}, {row.get('duration')})")
        self.shot("runs")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shots", default="docs/screenshots", help="folder for the screenshots")
    p.add_argument("--steps", type=int, default=400, help="steps of the first run (it is stopped long before)")
    p.add_argument("--one-size", action="store_true", help="screenshots at 1280x720 only (faster)")
    args = p.parse_args(argv)
    shots = Path(args.shots).resolve()  # before the chdir below
    shots.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="peft-studio-walk-"))
    # the walk's settings, runs and studio data stay in its temp folder, never the user's
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("PEFT_STUDIO_HOME", "studio")):
        os.environ[var] = str(tmp / sub)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.chdir(tmp)  # relative run folders ("runs/…") land here
    from PySide6.QtWidgets import QApplication

    from studio import settings as settings_mod
    from studio import tasks
    from studio.supervisor import wait_orphans

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(settings_mod.ORGANIZATION)
    app.setApplicationName(settings_mod.APPLICATION + " walk")
    tasks.init_bridge()
    walk = Walk(shots, tmp, SIZES[:1] if args.one_size else SIZES, steps=args.steps)
    code = 0
    try:
        walk.run()
    except Exception as e:  # noqa: BLE001 - report the failed check, keep a picture of it
        code = 1
        print(f"walk FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        if walk.win is not None:
            try:
                walk.win.grab().save(str(shots / "failed-walk.png"))
                print(f"walk: the window at the failure: {shots / 'failed-walk.png'}", file=sys.stderr)
            except RuntimeError:
                pass
        import traceback

        traceback.print_exc()
    finally:
        for w in QApplication.topLevelWidgets():
            if hasattr(w, "shutdown") and w.isVisible():
                w.shutdown()
        tasks.shutdown()
        wait_orphans()
    if code == 0:  # a failed walk keeps its folder (settings, runs, logs) to look at
        os.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"walk: its files are kept in {tmp}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
