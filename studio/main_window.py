"""The main window: composition only. It builds the shared services (config model, run files, run
controller), the panels of studio/panels/registry.py, their places (studio/layout.py), the menus,
toolbar and status bar, and decides what happens on close. Each part does its own work."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QStyle, QToolBar

from engine.config import RunConfig
from studio import tasks
from studio.config_model import ConfigModel
from studio.controls import go_to, set_control
from studio.dialogs import ask_close_during_run, show_about, show_shortcuts
from studio.errors import show_error
from studio.layout import WindowLayout
from studio.messages import plain_message
from studio.panels.base import Bus, Studio
from studio.panels.registry import build_panels
from studio.run_controller import RunController
from studio.run_files import RunFiles
from studio.settings import Settings
from studio.status_bar import StatusLine
from studio.supervisor import RunSupervisor


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, initial: RunConfig | None = None,
                 reattach: bool = True, supervisor: RunSupervisor | None = None, parent=None):
        super().__init__(parent)
        tasks.init_bridge()
        self.settings = settings or Settings()
        self.setWindowTitle("PEFT Studio")
        self.setObjectName("MainWindow")
        self.resize(1480, 940)
        self._force_close = False
        self._plot_steps: list | None = None
        self._plots_built = 0

        self.config_model = ConfigModel(self)
        self.files = RunFiles(self.settings, self.config_model, self)
        self.runs = RunController(self.settings, self.config_model, self.files.load_run_config, supervisor, self)
        self.studio = Studio(self.settings, self.config_model, self.runs, self.files, Bus(self),
                             show_panel=lambda key: self.placement.show_panel(key), dialog_parent=self,
                             go_to=self.go_to, set_control=self.set_control)
        self.panels = build_panels(self.studio)
        p = self.panels
        self.config_model.bind(p["model"], p["data"], p["method"], p["training"])
        self.placement = WindowLayout(self, self.panels, self.settings)
        self.status = StatusLine(self.statusBar(), self.go_to)
        self._make_menus()
        self._wire()
        self.placement.restore()
        self.config_model.set_config(initial or self.files.last_config())
        if reattach:
            QTimer.singleShot(0, self.runs.reattach_last)

    # -- construction ------------------------------------------------------------------------
    def _action(self, text, slot, shortcut=None, icon=None, tip=None) -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        if icon is not None:
            act.setIcon(self.style().standardIcon(icon))
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.triggered.connect(lambda: slot())
        return act

    def _make_menus(self):
        sp, files, runs = QStyle.StandardPixmap, self.files, self.runs
        self.act_open_data = self._action("Open data…", self._open_data, "Ctrl+O", sp.SP_DialogOpenButton,
                                          "Open a training data file (Ctrl+O)")
        self.act_open_model = self._action("Open model folder…", lambda: self._browse_model(False), "Ctrl+M",
                                           sp.SP_DirOpenIcon, "Open a local model folder (Ctrl+M)")
        open_gguf = self._action("Open GGUF model…", lambda: self._browse_model(True))
        self.act_open_run_file = self._action("Open run file…", files.open_run_file, "Ctrl+Shift+O", None,
                                              "Load settings from a run YAML file")
        self.act_save = self._action("Save run file", files.save_run_file, "Ctrl+S", sp.SP_DialogSaveButton,
                                     "Save these settings as a run YAML file (Ctrl+S)")
        save_as = self._action("Save run file as…", lambda: files.save_run_file(ask=True), "Ctrl+Shift+S")
        open_run = self._action("Open run folder…", self._open_run_dir, tip="Show a past or running run in the monitor")
        self.act_quit = self._action("Quit", self.close, "Ctrl+Q")
        demo = self._action("Load demo settings", self.load_demo,
                            tip="The bundled demo model and data set, ready to start")
        self.act_start, self.act_stop, self.act_resume, self.act_kill = (
            runs.act_start, runs.act_stop, runs.act_resume, runs.act_kill)
        shortcuts = (self.act_start, self.act_stop, self.act_open_data, self.act_open_model, self.act_open_run_file,
                     self.act_save, self.act_quit)
        menus = {"&File": [self.act_open_data, self.act_open_model, open_gguf, None, self.act_open_run_file,
                           self.act_save, save_as, None, open_run, demo, None, self.act_quit],
                 "&Run": [*runs.actions, None, runs.act_kill],
                 "&View": [d.toggleViewAction() for d in self.placement.docks.values()]
                 + [None, self._action("Reset layout", self.placement.reset)],
                 "&Help": [self._action("Keyboard shortcuts", lambda: show_shortcuts(self, shortcuts)),
                           self._action("About PEFT Studio", lambda: show_about(self))]}
        for title, actions in menus.items():
            menu = self.menuBar().addMenu(title)
            for a in actions:
                menu.addSeparator() if a is None else menu.addAction(a)
        tb = QToolBar("Main")
        tb.setObjectName("toolbar-main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (self.act_open_data, self.act_open_run_file, self.act_save, None, *runs.actions):
            tb.addSeparator() if a is None else tb.addAction(a)
        self.addToolBar(tb)

    def _wire(self):
        status = self.status
        self.config_model.sig_errors.connect(status.show_errors)
        self.config_model.sig_warnings.connect(status.show_warnings)
        self.runs.sig_state.connect(status.show_state)
        for source in (self.runs, self.files):
            source.sig_message.connect(status.show_message)
            source.sig_error.connect(lambda title, text: show_error(self, title, text, go_to=self.go_to))
        self.runs.sig_close_ready.connect(self.close)

    # -- plots: pyqtgraph loads after the window shows ----------------------------------------------
    def showEvent(self, e):
        super().showEvent(e)
        if self._plot_steps is None:
            QTimer.singleShot(0, self.placement.check_fit)  # a saved layout that squeezes the tabs is reset
            # The helper processes import torch/transformers/peft now, so the first real job starts
            # warm; the status bar says when they are ready (whoever opened the window).
            warm = tasks.start_job("warm_up", key="warm_up", parent=self)
            warm.sig_result.connect(self.status.set_ml_ready)
            warm.sig_error.connect(self.status.set_ml_failed)
            tasks.start_job("warm_up", key="warm_up", lane="data", parent=self)
            self._plot_steps = []
            # pyqtgraph costs ~0.5 s to import and the plots ~0.3 s to build: import it in a thread
            # (plain Python, so the UI keeps its GIL slices), then build one plot per event-loop
            # turn, so the window is never frozen for long while it fills in.
            task = tasks.start_thread(_import_plots, parent=self)
            task.sig_result.connect(self._build_plots)
            task.sig_error.connect(lambda exc: self.status.show_message(
                f"Plots are unavailable: {plain_message(exc)}", 0))

    def _build_plots(self, _=None):
        self._plot_steps = [step for panel in self.panels.values() for step in panel.plot_steps()]
        self._plots_built = 0
        self._build_plot_step()

    def _build_plot_step(self):
        if self._plots_built < len(self._plot_steps):
            self._plot_steps[self._plots_built]()
            self._plots_built += 1
            # a short pause, not 0: let the new plot paint before the next one is built
            QTimer.singleShot(30, self._build_plot_step)

    def plots_ready(self) -> bool:
        return bool(self._plot_steps) and self._plots_built >= len(self._plot_steps)

    def go_to(self, path: str) -> bool:
        """Show and focus the control that sets run-file ``path`` (the "Go to …" buttons)."""
        return go_to(self.placement.show_panel, self.panels, path)

    def set_control(self, path: str, value) -> bool:
        """Set the control for run-file ``path`` to ``value`` and show it (one-click fixes)."""
        return set_control(self.placement.show_panel, self.panels, path, value)

    # -- menu actions that need a panel -------------------------------------------------------------
    def _open_data(self):
        self.placement.show_panel("data")
        self.panels["data"].browse()

    def _browse_model(self, gguf: bool):
        self.placement.show_panel("model")
        (self.panels["model"].browse_gguf if gguf else self.panels["model"].browse_folder)()

    def _open_run_dir(self):
        path = QFileDialog.getExistingDirectory(self, "Open run folder", self.settings.get("active/run_dir"))
        if path:
            self.runs.attach(path)

    def load_demo(self):
        from studio.demo import demo_config

        self.config_model.set_config(demo_config())

    # -- closing ------------------------------------------------------------------------------------
    def ask_close_during_run(self) -> str:
        """'stop', 'keep' or 'cancel' (tests replace this method)."""
        return ask_close_during_run(self)

    def closeEvent(self, e):
        if not self._force_close and not self.runs.may_close(self.ask_close_during_run):
            e.ignore()
            return
        self.placement.save()
        self.files.save_last_config()
        self.settings.sync()
        for panel in self.panels.values():
            panel.shutdown()
        # every thread is quit and waited for, on every path (a running QThread aborts the app)
        self.runs.shutdown(kill=self._force_close)
        super().closeEvent(e)

    def shutdown(self):
        """Close without asking, killing any run (tests, and the smoke mode's exit)."""
        self._force_close = True
        self.close()


def _import_plots(state):
    import studio.plots  # noqa: F401  (pyqtgraph and the themed plot class)
