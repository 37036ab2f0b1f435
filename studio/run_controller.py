"""The run lifecycle: start, stop, resume, kill, show a past run, re-attach after a relaunch, and
the close policy ("keep running" / "stop and save").

It talks to the engine only through the run file it writes (studio/run_dirs.py), the child
process and its event stream (studio/supervisor.py), and each run's ``events.jsonl``, which
rebuilds every view of a run after a restart. It owns the Run actions (Start, Stop, Resume,
Kill) and keeps them enabled to match the run and the form. It never touches a panel: panels
connect to its ``sig_*`` signals (studio/panels/base.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QStyle

from engine.config import ConfigError, RunConfig
from engine.events import read_events
from studio.config_model import ConfigModel
from studio.messages import plain_message
from studio.run_dirs import completed_steps, display_path, has_checkpoint, last_pid, prepare_run
from studio.settings import Settings
from studio.summary import what_will_train
from studio.supervisor import RunSupervisor
from studio.wording import control_name, window_text

ENDED = ("finished", "stopped", "failed")
START_TIP = "Start training (Ctrl+Enter)"


class RunController(QObject):
    sig_event = Signal(object)       # every engine event of the run shown (a dict), in order
    sig_log = Signal(str)            # lines for the log: the engine's stderr and the studio's notes
    sig_state = Signal(str)          # idle, starting, running, stopping, finished, stopped, failed
    sig_active = Signal(bool)        # a run is starting, running or stopping
    sig_run_dir = Signal(str)        # another run is shown: views reset, then events rebuild them
    sig_started = Signal(str)        # a run was started (its folder): it wants to be seen
    sig_finished = Signal(object)    # the terminal event (finished / stopped)
    sig_failed = Signal(object)      # {error, hint, log_tail, exit_code}
    sig_ended = Signal(str)          # finished, stopped or failed: run lists refresh
    sig_output_dir = Signal(str)     # the form's output folder must show this folder
    sig_message = Signal(str)        # a short status-bar message
    sig_error = Signal(str, str)     # title, text: worth a dialog
    sig_close_ready = Signal()       # "stop and save" on close is done: the window may close

    def __init__(self, settings: Settings, config: ConfigModel, load_run_config: Callable[[str], bool],
                 supervisor: RunSupervisor | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.settings, self.config = settings, config
        self._load_run_config = load_run_config
        self.supervisor = supervisor or RunSupervisor()
        self.supervisor.setParent(self)
        self._close_when_idle = False
        sp = QStyle.StandardPixmap
        self.act_start = self._action("Start", self.start, sp.SP_MediaPlay, START_TIP, ["Ctrl+Return", "Ctrl+Enter"])
        self.act_stop = self._action("Stop", self.stop, sp.SP_MediaStop,
                                     "Stop at the next step and save the adapter (Ctrl+.)", ["Ctrl+."])
        self.act_resume = self._action("Resume", self.resume, sp.SP_MediaSeekForward,
                                       "Continue this output folder's run from its latest checkpoint")
        self.act_kill = self._action("Kill run", self.kill, None,
                                     "End the engine process now, without saving (a last resort)")
        sup = self.supervisor
        sup.sig_event.connect(self.sig_event)
        sup.sig_output.connect(self.sig_log)
        sup.sig_state.connect(self._on_state)
        sup.sig_failed.connect(self._on_failed)
        sup.sig_finished.connect(self.sig_finished)
        config.sig_errors.connect(lambda _errors: self.update_actions())

    def _action(self, text, slot, icon, tip, shortcuts=()) -> QAction:
        act = QAction(text, self)
        if shortcuts:
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
        if icon is not None:
            act.setIcon(QApplication.style().standardIcon(icon))
        act.setStatusTip(tip)
        act.setToolTip(tip)
        act.triggered.connect(lambda: slot())
        return act

    @property
    def actions(self) -> list[QAction]:
        """Start, Stop, Resume: the buttons of the Training panel and the toolbar."""
        return [self.act_start, self.act_stop, self.act_resume]

    # -- state ---------------------------------------------------------------------------------
    def is_active(self) -> bool:
        return self.supervisor.is_active()

    def update_actions(self) -> None:
        """Enable the Run actions to match the run and the form (every change of either)."""
        active = self.is_active()
        errors = self.config.errors
        ok = not errors and self.config.config is not None
        self.act_start.setEnabled(ok and not active)
        if errors:
            lines = "\n".join(f"• {control_name(p)}: {window_text(m)}" for p, m in errors.items())
            self.act_start.setToolTip(f"Start is off until these are fixed:\n{lines}")
        elif active:
            self.act_start.setToolTip("A run is in progress: Start is available again when it ends.")
        else:
            self.act_start.setToolTip(f"{START_TIP}\n{what_will_train(self.config.config)}")
        self.act_stop.setEnabled(self.supervisor.state in ("starting", "running"))
        self.act_kill.setEnabled(active)
        target = None if active else self.resume_target()
        self.act_resume.setEnabled(not active and target is not None)
        self.act_resume.setToolTip(f"Continue {display_path(target)} from its latest checkpoint" if target
                                   else "Continue the run shown from its latest checkpoint (it has none)")
        self.sig_active.emit(active)

    def _on_state(self, state: str) -> None:
        self.update_actions()
        self.sig_state.emit(state)
        if state in ENDED:
            self.sig_ended.emit(state)
            if self._close_when_idle:
                QTimer.singleShot(0, self.sig_close_ready.emit)

    def _on_failed(self, info: dict) -> None:
        # the one log line for every failure (the Log panel does not repeat the failed event)
        error, hint = window_text(info.get("error") or ""), window_text(info.get("hint") or "")
        self.sig_log.emit(f"Run failed: {error}" + (f" — {hint}" if hint else ""))
        self.sig_failed.emit(info)

    # -- running -------------------------------------------------------------------------------
    def start(self, resume: bool = False, output_dir: str | None = None) -> bool:
        """Start the form's run (``resume``: continue its output folder from the latest checkpoint;
        ``output_dir``: that folder, instead of the form's)."""
        if self.is_active():
            self.sig_message.emit("A run is already in progress.")
            return False
        cfg, errors = self.config.validate_now()
        if errors or cfg is None:
            # the status line already says why, by the control's name, with a button to it (a
            # temporary message would hide both)
            return False
        if output_dir:
            cfg = RunConfig.from_dict({**cfg.to_dict(), "output_dir": str(output_dir)}, "the studio")
        try:
            run_cfg, run_file = prepare_run(cfg, resume=resume)
        except (OSError, ConfigError) as e:
            self.sig_error.emit("PEFT Studio", f"Could not prepare the run.\n\n{plain_message(e)}")
            return False
        if Path(run_cfg.output_dir) != Path(cfg.output_dir).expanduser().absolute():
            shown = display_path(run_cfg.output_dir)
            self.sig_log.emit(f"{cfg.output_dir} already holds a run; this one goes to {shown}.")
            self.sig_output_dir.emit(shown)
        self.sig_run_dir.emit(run_cfg.output_dir)
        if resume:
            # Every view is rebuilt from the run's events.jsonl: steps 1..N are drawn before the
            # resumed steps arrive, and Elapsed continues from the earlier part's time.
            self._replay(run_cfg.output_dir)
        self.sig_log.emit(("Resuming" if resume else "Starting") + f" run in {run_cfg.output_dir}")
        self.supervisor.start(run_file, run_cfg.output_dir)
        self._remember(run_cfg.output_dir)
        self.sig_started.emit(run_cfg.output_dir)
        self.update_actions()
        return True

    def _replay(self, run_dir: str) -> None:
        for ev in read_events(Path(run_dir) / "events.jsonl"):
            self.sig_event.emit(ev)

    def resume_target(self) -> str | None:
        """The run Resume continues: the run shown (when it has a checkpoint), else the form's
        output folder when that holds one."""
        shown = self.supervisor.run_dir
        if shown is not None and has_checkpoint(shown):
            return str(shown)
        cfg = self.config.config
        out = Path(cfg.output_dir).expanduser() if cfg is not None else None
        return str(out) if out is not None and has_checkpoint(out) else None

    def resume(self) -> bool:
        target = self.resume_target()
        if target is None:
            self.sig_message.emit("Nothing to resume: the run shown has no checkpoint.")
            return False
        if self.supervisor.run_dir is not None and Path(target) == Path(self.supervisor.run_dir):
            return self.resume_run_dir(target)
        return self.start(resume=True)

    def stop(self) -> None:
        if self.supervisor.stop():
            self.sig_log.emit("Stop requested: the run saves its adapter at the end of the current step.")

    def kill(self) -> None:
        self.supervisor.kill()

    def resume_run_dir(self, run_dir: str) -> bool:
        """Load a past run's settings into the form and continue it from its latest checkpoint."""
        if not has_checkpoint(run_dir):
            self.sig_error.emit("Resume", "This run has no checkpoint to resume from.\n\nSet “Save every "
                                "(steps)” in the Training panel so that future runs keep checkpoints.")
            return False
        # The run's own settings (the form may show another run's), continued in its own folder;
        # but when the form shows this run's settings with only what a resume may change edited
        # (a raised “Max steps”, a new learning rate: docs/resume.md), those edits are the point.
        run_cfg = self._run_config(run_dir)
        form_cfg, _ = self.config.validate_now()
        if run_cfg is None or form_cfg is None or self._fixed_changes(run_cfg, form_cfg, run_dir):
            self._load_run_config(run_dir)
            form_cfg, _ = self.config.validate_now()
        done = completed_steps(run_dir)
        if done is not None and run_cfg is not None and form_cfg is not None and \
                (form_cfg.train.max_steps, form_cfg.train.epochs) == (run_cfg.train.max_steps, run_cfg.train.epochs):
            # the engine would start, load and say so after seconds: the window knows already
            self.sig_error.emit("Resume", f"This run is complete: it trained all its {done} steps.\n\n"
                                "Its settings are in the form now. To train it further, raise “Max steps” "
                                "(Training panel) or “Epochs” (Training panel) and press Resume again.")
            return False
        return self.start(resume=True, output_dir=run_dir)

    @staticmethod
    def _run_config(run_dir: str) -> RunConfig | None:
        try:
            return RunConfig.load(Path(run_dir) / "run.yaml")
        except (OSError, ConfigError):
            return None

    @staticmethod
    def _fixed_changes(run_cfg: RunConfig, form_cfg: RunConfig, run_dir: str) -> list:
        from engine.training import changed_fixed_fields

        form = RunConfig.from_dict({**form_cfg.to_dict(), "output_dir": str(run_dir)}, "the studio")
        return changed_fixed_fields(run_cfg, form)

    # -- runs on disk --------------------------------------------------------------------------
    def attach(self, run_dir: str) -> bool:
        """Show a run from its events.jsonl; follow it live while its engine is still running."""
        if self.is_active():
            self.sig_message.emit("Stop the current run before opening another one.")
            return False
        if not (Path(run_dir) / "events.jsonl").exists():
            self.sig_error.emit("Open run", f"{run_dir} has no events.jsonl: it is not a run folder.")
            return False
        pid = last_pid(run_dir) or self.settings.get("active/pid")
        self.sig_run_dir.emit(run_dir)
        self.supervisor.attach(run_dir, pid)
        self._remember(run_dir)
        self.update_actions()
        return True

    def reattach_last(self) -> None:
        """After a relaunch: show the run shown last (and follow it if its engine still runs)."""
        run_dir = self.settings.get("active/run_dir")
        if run_dir and (Path(run_dir) / "events.jsonl").exists() and not self.is_active():
            self.attach(run_dir)

    def _remember(self, run_dir: str) -> None:
        self.settings.set("active/run_dir", str(run_dir))
        self.settings.add_recent_run(str(run_dir))

    # -- closing -------------------------------------------------------------------------------
    def may_close(self, ask: Callable[[], str]) -> bool:
        """The close policy: True when the window may close now.

        While a run is active ``ask()`` chooses: ``"keep"`` (the run goes on, unwatched; the next
        start re-attaches to it), ``"stop"`` (stop and save; ``sig_close_ready`` follows once it
        has ended, and until then closing is refused), or ``"cancel"``.
        """
        if not self.is_active():
            return True
        if self._close_when_idle:
            return False  # already stopping; the window closes when the engine has saved
        choice = ask()
        if choice == "cancel":
            return False
        if choice == "stop":
            self._close_when_idle = True
            self.stop()
            self.sig_message.emit("Stopping: the window closes when the adapter is saved…")
            return False
        sup = self.supervisor
        self.settings.set("active/run_dir", str(sup.run_dir))
        self.settings.set("active/pid", sup.pid)
        sup.detach()
        return True

    def shutdown(self, kill: bool = False) -> None:
        """Release the reader thread (waited for, on every path); kill the run only if asked."""
        self.supervisor.shutdown(kill=kill)
