"""Run files in and out of the form: open and save a run YAML, load a past run's settings, and the
settings of the last session (kept in QSettings as YAML)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from engine.config import ConfigError, RunConfig
from engine.events import read_events
from studio.config_model import ConfigModel
from studio.messages import plain_message
from studio.settings import Settings

RUN_FILE_FILTER = "Run files (*.yaml *.yml)"


class RunFiles(QObject):
    sig_message = Signal(str)       # a short status-bar message
    sig_error = Signal(str, str)    # title, text: worth a dialog
    sig_file_error = Signal(str, str)  # title, text about a run file: its keys as written in it

    def __init__(self, settings: Settings, config: ConfigModel, dialog_parent: QWidget | None = None):
        super().__init__(config)
        self.settings, self.config = settings, config
        self.dialog_parent = dialog_parent
        self.run_file: str = settings.get("last/run_file")

    # -- opening -------------------------------------------------------------------------------
    def open_run_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.dialog_parent, "Open run file", self.run_file or "",
                                              RUN_FILE_FILTER)
        if path:
            self.load_yaml(Path(path))

    def load_yaml(self, path: Path, remember: bool = True) -> bool:
        """Show a run file in the form; ``remember``: it becomes the file Ctrl+S writes."""
        try:
            cfg = RunConfig.load(path)
        except ConfigError as e:
            # The mistake is in the file, which the form does not show: name the file and its keys
            # (a control's name would point at the window's own, unchanged, value).
            msg = plain_message(e)
            head = "" if str(path) in msg else f"{path}:\n"
            self.sig_file_error.emit("Open run file", f"This run file cannot be used.\n\n{head}{msg}\n\n"
                                     "The window keeps its settings: fix the file and open it again.")
            return False
        self.config.set_config(cfg)
        if remember:
            self.run_file = str(path)
            self.settings.set("last/run_file", self.run_file)
        self.sig_message.emit(f"Loaded {path}")
        return True

    def load_run_config(self, run_dir: str) -> bool:
        """Show a past run's settings: its run.yaml, else the config in its ``started`` event."""
        path = Path(run_dir) / "run.yaml"
        if path.exists():
            # not remembered as "the run file": Ctrl+S must never overwrite a run's own record
            return self.load_yaml(path, remember=False)
        events = read_events(Path(run_dir) / "events.jsonl")
        started = next((e for e in events if e.get("event") == "started" and e.get("config")), None)
        if started is None:
            self.sig_error.emit("Load settings", f"{run_dir} has no run.yaml to load settings from.")
            return False
        try:
            self.config.set_config(RunConfig.from_dict(started["config"], str(path)))
        except ConfigError as e:
            self.sig_error.emit("Load settings", plain_message(e))
            return False
        return True

    # -- saving --------------------------------------------------------------------------------
    def save_run_file(self, ask: bool = False) -> bool:
        """Write the form as a run file (the last one, or a chosen one when ``ask`` or none yet)."""
        cfg, errors = self.config.validate_now()
        if cfg is None:
            self.sig_error.emit("Save run file", "The settings cannot be saved until the marked fields are fixed.")
            return False
        path = self.run_file
        if ask or not path:
            path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Save run file", path or "run.yaml",
                                                  "Run files (*.yaml)")
            if not path:
                return False
        try:
            cfg.save(path)
        except OSError as e:
            self.sig_error.emit("PEFT Studio", f"Could not save the run file.\n\n{plain_message(e)}")
            return False
        self.run_file = path
        self.settings.set("last/run_file", path)
        note = " (it still has problems: see the marked fields)" if errors else ""
        self.sig_message.emit(f"Saved {path}{note}")
        return True

    # -- the last session ----------------------------------------------------------------------
    def last_config(self) -> RunConfig:
        text = self.settings.get("last/config")
        if text:
            try:
                return RunConfig.from_yaml(text, "the last session")
            except ConfigError:
                pass  # a field was renamed since; start from defaults rather than refuse to open
        return RunConfig()

    def save_last_config(self) -> None:
        if self.config.config is not None:
            self.settings.set("last/config", self.config.config.to_yaml())
