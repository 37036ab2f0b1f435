"""The main window: composition and wiring only — each panel, the config model and the
supervisor do their own work; this file decides where they sit and who hears whom."""

from __future__ import annotations

import importlib
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QStyle,
    QTabWidget,
    QToolBar,
    QWidget,
)

from engine.config import ConfigError, RunConfig
from engine.events import read_events
from studio.config_model import ConfigModel
from studio.dialogs import ask_close_during_run, show_about, show_shortcuts
from studio.errors import plain_message, show_error, show_exception
from studio.panels.data import DataPanel
from studio.panels.estimate import EstimatePanel
from studio.panels.log import LogPanel
from studio.panels.method import MethodPanel
from studio.panels.model import ModelPanel
from studio.panels.monitor import MonitorPanel
from studio.panels.runs import RunsPanel
from studio.panels.training import TrainingPanel
from studio.run_control import display_path, has_checkpoint, last_pid, prepare_run
from studio.settings import Settings
from studio.supervisor import RunSupervisor
from studio.widgets import scroll
from studio.workers import init_bridge, run_in_thread

# Bump when the dock arrangement changes: a state saved by an older layout is then ignored.
LAYOUT_VERSION = 2
# Tabs written by other modules; shown only when present (``module``, class names to try, title).
OPTIONAL_TABS = [("studio.panels.playground", ("PlaygroundPanel", "Playground"), "Playground"),
                 ("studio.panels.export", ("ExportPanel", "Export"), "Export")]


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, initial: RunConfig | None = None,
                 reattach: bool = True, supervisor: RunSupervisor | None = None, parent=None):
        super().__init__(parent)
        init_bridge()
        self.settings = settings or Settings()
        self.setWindowTitle("PEFT Studio")
        self.setObjectName("MainWindow")
        self.resize(1480, 940)
        self.supervisor = supervisor or RunSupervisor(self)
        if self.supervisor.parent() is None:
            self.supervisor.setParent(self)
        self._close_when_idle = False
        self._force_close = False
        self._plots_built = False
        self._plot_steps_done = 0
        self._plot_steps: list | None = None
        self.run_file: str = self.settings.get("last/run_file")

        self._make_actions()
        self._make_panels()
        self._make_docks()
        self._make_menus()
        self._make_toolbar()
        self._make_statusbar()
        self.config_model = ConfigModel(self.model_panel, self.data_panel, self.method_panel,
                                        self.training_panel, self)
        # "Write cluster script" writes the whole current run configuration.
        self.training_panel.where.config_source = lambda: self.config_model.validate_now()[0]
        self._wire()
        self._restore_layout()
        self.config_model.set_config(initial or self._last_config())
        self.runs_panel.refresh()
        if reattach:
            QTimer.singleShot(0, self._reattach_last)

    # -- construction ------------------------------------------------------------------------
    def _action(self, text, slot, shortcut=None, icon=None, tip=None) -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcuts([QKeySequence(s) for s in ([shortcut] if isinstance(shortcut, str) else shortcut)])
        if icon is not None:
            act.setIcon(self.style().standardIcon(icon))
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.triggered.connect(slot)
        return act

    def _make_actions(self):
        sp = QStyle.StandardPixmap
        self.act_start = self._action("Start", lambda: self.start_run(), ["Ctrl+Return", "Ctrl+Enter"],
                                      sp.SP_MediaPlay, "Start training (Ctrl+Enter)")
        self.act_stop = self._action("Stop", self.stop_run, "Ctrl+.", sp.SP_MediaStop,
                                     "Stop at the next step and save the adapter (Ctrl+.)")
        self.act_resume = self._action("Resume", lambda: self.start_run(resume=True), None, sp.SP_MediaSeekForward,
                                       "Continue this output folder's run from its latest checkpoint")
        self.act_kill = self._action("Kill run", self.kill_run, None, None,
                                     "End the engine process now, without saving (a last resort)")
        self.act_open_data = self._action("Open data…", self._open_data, "Ctrl+O", sp.SP_DialogOpenButton,
                                          "Open a training data file (Ctrl+O)")
        self.act_open_model = self._action("Open model folder…", self._open_model, "Ctrl+M", sp.SP_DirOpenIcon,
                                           "Open a local model folder (Ctrl+M)")
        self.act_open_gguf = self._action("Open GGUF model…", lambda: self._show_dock("model", True), None)
        self.act_open_run_file = self._action("Open run file…", self.open_run_file, "Ctrl+Shift+O", None,
                                              "Load settings from a run YAML file")
        self.act_save = self._action("Save run file", self.save_run_file, "Ctrl+S", sp.SP_DialogSaveButton,
                                     "Save these settings as a run YAML file (Ctrl+S)")
        self.act_save_as = self._action("Save run file as…", lambda: self.save_run_file(ask=True), "Ctrl+Shift+S")
        self.act_open_run_dir = self._action("Open run folder…", self._open_run_dir, None, None,
                                             "Show a past or running run in the monitor")
        self.act_quit = self._action("Quit", self.close, "Ctrl+Q")
        self.act_reset_layout = self._action("Reset layout", self.reset_layout)
        self.act_demo = self._action("Load demo settings", self.load_demo, None, None,
                                     "The bundled demo model and data set, ready to start")

    def _make_panels(self):
        s = self.settings
        self.model_panel = ModelPanel(s)
        self.data_panel = DataPanel(s)
        self.method_panel = MethodPanel()
        self.training_panel = TrainingPanel([self.act_start, self.act_stop, self.act_resume])
        self.estimate_panel = EstimatePanel(s)
        self.monitor = MonitorPanel(s)
        self.log_panel = LogPanel()
        self.runs_panel = RunsPanel(s)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.monitor, "Monitor")
        self.tabs.addTab(self.data_panel, "Data")
        self.extra_tabs: dict[str, QWidget] = {}
        for module, names, title in OPTIONAL_TABS:
            w = _optional_widget(module, names, self)
            if w is not None:
                self.extra_tabs[title] = w
                self.tabs.addTab(w, title)
        self.setCentralWidget(self.tabs)

    def _make_docks(self):
        self.docks: dict[str, QDockWidget] = {}

        def dock(key, title, widget, area, scrollable=True):
            d = QDockWidget(title, self)
            d.setObjectName(f"dock-{key}")
            d.setWidget(scroll(widget) if scrollable else widget)
            d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                          QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                          QDockWidget.DockWidgetFeature.DockWidgetClosable)
            self.addDockWidget(area, d)
            self.docks[key] = d
            return d

        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        m = dock("model", "Model", self.model_panel, left)
        me = dock("method", "Method", self.method_panel, left)
        t = dock("training", "Training", self.training_panel, left)
        self.tabifyDockWidget(m, me)
        self.tabifyDockWidget(me, t)
        m.raise_()
        dock("estimate", "Estimate", self.estimate_panel, right)
        lg = dock("log", "Log", self.log_panel, bottom, scrollable=False)
        r = dock("runs", "Runs", self.runs_panel, bottom, scrollable=False)
        self.tabifyDockWidget(lg, r)
        lg.raise_()
        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        # The side docks run the full height; the log sits under the central tabs only.
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([m, self.docks["estimate"]], [430, 330], Qt.Orientation.Horizontal)
        self.resizeDocks([lg], [170], Qt.Orientation.Vertical)
        self._default_state = self.saveState(LAYOUT_VERSION)

    def _make_menus(self):
        mb = self.menuBar()
        f = mb.addMenu("&File")
        for a in (self.act_open_data, self.act_open_model, self.act_open_gguf, None, self.act_open_run_file,
                  self.act_save, self.act_save_as, None, self.act_open_run_dir, self.act_demo, None,
                  self.act_quit):
            f.addSeparator() if a is None else f.addAction(a)
        r = mb.addMenu("&Run")
        for a in (self.act_start, self.act_stop, self.act_resume, None, self.act_kill):
            r.addSeparator() if a is None else r.addAction(a)
        v = mb.addMenu("&View")
        for d in self.docks.values():
            v.addAction(d.toggleViewAction())
        v.addSeparator()
        v.addAction(self.act_reset_layout)
        h = mb.addMenu("&Help")
        h.addAction(self._action("Keyboard shortcuts", self._show_shortcuts))
        h.addAction(self._action("About PEFT Studio", self._show_about))

    def _make_toolbar(self):
        tb = QToolBar("Main")
        tb.setObjectName("toolbar-main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (self.act_open_data, self.act_open_run_file, self.act_save, None, self.act_start,
                  self.act_stop, self.act_resume):
            tb.addSeparator() if a is None else tb.addAction(a)
        self.addToolBar(tb)

    def _make_statusbar(self):
        sb = self.statusBar()
        self.validity_label = QLabel("")
        self.validity_label.setObjectName("validity")
        sb.addWidget(self.validity_label, 1)
        self.ml_label = QLabel("Loading ML libraries…")
        sb.addPermanentWidget(self.ml_label)
        self.state_label = QLabel("Idle")
        self.state_label.setObjectName("status-run-state")
        sb.addPermanentWidget(self.state_label)

    def _wire(self):
        cm, sup = self.config_model, self.supervisor
        cm.sig_errors.connect(self._on_errors)
        cm.sig_config.connect(self.estimate_panel.update_estimate)
        cm.sig_config.connect(self.method_panel.update_counts)
        cm.sig_config.connect(self.data_panel.update_preview)
        self.model_panel.sig_model_info.connect(self.method_panel.set_model_info)
        sup.sig_event.connect(self.monitor.on_event)
        sup.sig_event.connect(self.log_panel.on_event)
        sup.sig_output.connect(self.log_panel.append)
        sup.sig_state.connect(self._on_state)
        sup.sig_failed.connect(self._on_failed)
        sup.sig_finished.connect(self._on_finished)
        self.runs_panel.sig_open.connect(self.attach_run)
        self.runs_panel.sig_load_config.connect(self.load_run_config)
        self.runs_panel.sig_resume.connect(self.resume_run_dir)

    def showEvent(self, e):
        super().showEvent(e)
        if not self._plots_built:
            self._plots_built = True
            # pyqtgraph costs ~0.5 s to import and the plots ~0.3 s to build: import it in a thread
            # (plain Python, so the UI keeps its GIL slices), then build one panel per event-loop
            # turn, so the window is never frozen for long while it fills in.
            run_in_thread(_import_plots, on_done=self._build_plots_step, on_error=self._plots_failed)

    def _build_plots_step(self, _=None):
        if self._plot_steps is None:
            self._plot_steps = [*self.monitor.plot_steps(), self.estimate_panel.build_plots,
                                self.data_panel.histogram.build_plots]
        if self._plot_steps_done < len(self._plot_steps):
            self._plot_steps[self._plot_steps_done]()
            self._plot_steps_done += 1
            # a short pause, not 0: let the new plot paint before the next one is built
            QTimer.singleShot(30, self._build_plots_step)

    def _plots_failed(self, exc):
        self.statusBar().showMessage(f"Plots are unavailable: {plain_message(exc)}")

    def plots_ready(self) -> bool:
        return self._plot_steps is not None and self._plot_steps_done >= len(self._plot_steps)

    # -- layout persistence ------------------------------------------------------------------
    def _restore_layout(self):
        geo, state = self.settings.get("window/geometry"), self.settings.get("window/state")
        if geo:
            self.restoreGeometry(QByteArray(geo))
        if state:
            self.restoreState(QByteArray(state), LAYOUT_VERSION)  # ignored if saved by an older layout
        self.tabs.setCurrentIndex(min(self.settings.get("window/central_tab"), self.tabs.count() - 1))

    def reset_layout(self):
        self.restoreState(self._default_state, LAYOUT_VERSION)
        for d in self.docks.values():
            d.show()

    def _save_layout(self):
        s = self.settings
        s.set("window/geometry", bytes(self.saveGeometry().data()))
        s.set("window/state", bytes(self.saveState(LAYOUT_VERSION).data()))
        s.set("window/central_tab", self.tabs.currentIndex())
        if self.config_model.config is not None:
            s.set("last/config", self.config_model.config.to_yaml())
        s.sync()

    def _last_config(self) -> RunConfig:
        text = self.settings.get("last/config")
        if text:
            try:
                return RunConfig.from_yaml(text, "the last session")
            except ConfigError:
                pass  # a field was renamed since; start from defaults rather than refuse to open
        return RunConfig()

    # -- validity ----------------------------------------------------------------------------
    def _on_errors(self, errors: dict):
        if errors:
            first_path, first_msg = next(iter(errors.items()))
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            self.validity_label.setText(f"Fix {first_path}: {first_msg}{more}")
        else:
            self.validity_label.setText("Ready to start")
        self._update_actions()

    def _update_actions(self):
        active = self.supervisor.is_active()
        ok = not self.config_model.errors and self.config_model.config is not None
        self.act_start.setEnabled(ok and not active)
        if self.config_model.errors:
            lines = "\n".join(f"{p}: {m}" for p, m in self.config_model.errors.items())
            self.act_start.setToolTip(f"Fix these first:\n{lines}")
        else:
            self.act_start.setToolTip("Start training (Ctrl+Enter)")
        self.act_stop.setEnabled(self.supervisor.state in ("starting", "running"))
        self.act_kill.setEnabled(active)
        self.estimate_panel.time.set_run_active(active)
        cfg = self.config_model.config
        out = Path(cfg.output_dir).expanduser() if cfg is not None else None
        self.act_resume.setEnabled(ok and not active and out is not None and has_checkpoint(out))

    # -- running -----------------------------------------------------------------------------
    def start_run(self, resume: bool = False) -> bool:
        if self.supervisor.is_active():
            self.statusBar().showMessage("A run is already in progress.", 5000)
            return False
        cfg, errors = self.config_model.validate_now()
        if errors or cfg is None:
            self.statusBar().showMessage("Fix the marked fields before starting.", 5000)
            return False
        try:
            run_cfg, run_file = prepare_run(cfg, resume=resume)
        except (OSError, ConfigError) as e:
            show_exception(self, "prepare the run", e)
            return False
        if Path(run_cfg.output_dir) != Path(cfg.output_dir).expanduser().absolute():
            shown = display_path(run_cfg.output_dir)
            self.log_panel.append(f"{cfg.output_dir} already holds a run; this one goes to {shown}.")
            self.training_panel.output_dir.setText(shown)
        self.monitor.reset()
        self.monitor.set_run_dir(run_cfg.output_dir)
        self.log_panel.append(("Resuming" if resume else "Starting") + f" run in {run_cfg.output_dir}")
        self.supervisor.start(run_file, run_cfg.output_dir)
        self.settings.set("active/run_dir", run_cfg.output_dir)
        self.settings.add_recent_run(run_cfg.output_dir)
        self.tabs.setCurrentWidget(self.monitor)
        self._update_actions()
        return True

    def stop_run(self):
        if self.supervisor.stop():
            self.log_panel.append("Stop requested: the run saves its adapter at the end of the current step.")

    def kill_run(self):
        self.supervisor.kill()

    def _on_state(self, state: str):
        self.monitor.set_state(state)
        self.state_label.setText(state.capitalize())
        self._update_actions()
        if state in ("finished", "stopped", "failed"):
            self.runs_panel.refresh()
            if self._close_when_idle:
                QTimer.singleShot(0, self.close)

    def _on_failed(self, info: dict):
        self.monitor.show_failure(info)
        self.log_panel.append(f"Run failed: {info.get('error')}" +
                              (f" — {info['hint']}" if info.get("hint") else ""))
        self.tabs.setCurrentWidget(self.monitor)

    def _on_finished(self, ev: dict):
        for w in self.extra_tabs.values():
            _notify(w, "set_run_dir", ev.get("run_dir") or str(self.supervisor.run_dir or ""))
            if ev.get("adapter_dir"):
                _notify(w, "set_adapter", ev["adapter_dir"])

    # -- runs on disk ------------------------------------------------------------------------
    def attach_run(self, run_dir: str) -> bool:
        """Show a run from its events.jsonl; follow it live if its engine is still running."""
        if self.supervisor.is_active():
            self.statusBar().showMessage("Stop the current run before opening another one.", 5000)
            return False
        if not (Path(run_dir) / "events.jsonl").exists():
            show_error(self, "Open run", f"{run_dir} has no events.jsonl: it is not a run folder.")
            return False
        pid = last_pid(run_dir) or self.settings.get("active/pid")
        self.monitor.reset()
        self.monitor.set_run_dir(run_dir)
        self.supervisor.attach(run_dir, pid)
        self.settings.set("active/run_dir", run_dir)
        self.settings.add_recent_run(run_dir)
        self._update_actions()
        return True

    def _reattach_last(self):
        run_dir = self.settings.get("active/run_dir")
        if run_dir and (Path(run_dir) / "events.jsonl").exists() and not self.supervisor.is_active():
            self.attach_run(run_dir)

    def load_run_config(self, run_dir: str):
        path = Path(run_dir) / "run.yaml"
        if not path.exists():
            events = read_events(Path(run_dir) / "events.jsonl")
            started = next((e for e in events if e.get("event") == "started" and e.get("config")), None)
            if started is None:
                show_error(self, "Load settings", f"{run_dir} has no run.yaml to load settings from.")
                return
            self._apply_config_dict(started["config"], str(path))
            return
        # not remembered as "the run file": Ctrl+S must never overwrite a run's own record
        self._load_yaml(path, remember=False)

    def resume_run_dir(self, run_dir: str):
        if not has_checkpoint(run_dir):
            show_error(self, "Resume", "This run has no checkpoint to resume from.\n\nSet “Save every (steps)” "
                       "in the Training panel so that future runs keep checkpoints.")
            return
        self.load_run_config(run_dir)
        self.training_panel.output_dir.setText(run_dir)
        self.start_run(resume=True)

    # -- files -------------------------------------------------------------------------------
    def open_run_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open run file", self.run_file or "", "Run files (*.yaml *.yml)")
        if path:
            self._load_yaml(Path(path))

    def _load_yaml(self, path: Path, remember: bool = True) -> bool:
        try:
            cfg = RunConfig.load(path)
        except ConfigError as e:
            show_error(self, "Open run file", f"This run file cannot be used.\n\n{plain_message(e)}")
            return False
        self.config_model.set_config(cfg)
        if remember:
            self.run_file = str(path)
            self.settings.set("last/run_file", self.run_file)
        self.statusBar().showMessage(f"Loaded {path}", 5000)
        return True

    def _apply_config_dict(self, d: dict, source: str):
        try:
            self.config_model.set_config(RunConfig.from_dict(d, source))
        except ConfigError as e:
            show_error(self, "Load settings", plain_message(e))

    def save_run_file(self, ask: bool = False) -> bool:
        cfg, errors = self.config_model.validate_now()
        if cfg is None:
            show_error(self, "Save run file", "The settings cannot be saved until the marked fields are fixed.")
            return False
        path = self.run_file
        if ask or not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save run file", path or "run.yaml", "Run files (*.yaml)")
            if not path:
                return False
        try:
            cfg.save(path)
        except OSError as e:
            show_exception(self, "save the run file", e)
            return False
        self.run_file = path
        self.settings.set("last/run_file", path)
        note = " (it still has problems: see the marked fields)" if errors else ""
        self.statusBar().showMessage(f"Saved {path}{note}", 5000)
        return True

    def _open_data(self):
        self.tabs.setCurrentWidget(self.data_panel)
        self.data_panel.browse()

    def _open_model(self):
        self._show_dock("model")
        self.model_panel.browse_folder()

    def _open_run_dir(self):
        path = QFileDialog.getExistingDirectory(self, "Open run folder", self.settings.get("active/run_dir"))
        if path:
            self.attach_run(path)

    def _show_dock(self, key: str, gguf: bool = False):
        d = self.docks[key]
        d.show()
        d.raise_()
        if gguf:
            self.model_panel.browse_gguf()

    def load_demo(self):
        from studio.demo import demo_config

        self.config_model.set_config(demo_config())

    # -- ML readiness (set by the app when the background import finishes) ---------------------
    def set_ml_ready(self, seconds: float | None = None):
        self.ml_label.setText("ML libraries ready" + (f" ({seconds:.1f} s)" if seconds else ""))

    def set_ml_failed(self, exc: BaseException):
        self.ml_label.setText("ML libraries missing")
        self.ml_label.setToolTip(plain_message(exc))

    # -- help --------------------------------------------------------------------------------
    def _show_shortcuts(self):
        show_shortcuts(self, (self.act_start, self.act_stop, self.act_open_data, self.act_open_model,
                              self.act_open_run_file, self.act_save, self.act_quit))

    def _show_about(self):
        show_about(self)

    # -- closing -----------------------------------------------------------------------------
    def ask_close_during_run(self) -> str:
        """'stop', 'keep' or 'cancel' (tests replace this method)."""
        return ask_close_during_run(self)

    def closeEvent(self, e):
        sup = self.supervisor
        if sup.is_active() and not self._force_close:
            if self._close_when_idle:
                e.ignore()  # already stopping; close when the engine has saved
                return
            choice = self.ask_close_during_run()
            if choice == "cancel":
                e.ignore()
                return
            if choice == "stop":
                self._close_when_idle = True
                self.stop_run()
                self.statusBar().showMessage("Stopping: the window closes when the adapter is saved…")
                e.ignore()
                return
            self.settings.set("active/run_dir", str(sup.run_dir))
            self.settings.set("active/pid", sup.pid)
            sup.detach()
        self._save_layout()
        self.estimate_panel.time.shutdown()
        sup.shutdown(kill=self._force_close)
        super().closeEvent(e)

    def shutdown(self):
        """Close without asking, killing any run (tests, and the smoke mode's exit)."""
        self._force_close = True
        self.close()


def _import_plots():
    import studio.plots  # noqa: F401  (pyqtgraph and the themed plot class)


def _optional_widget(module: str, names: tuple[str, ...], parent) -> QWidget | None:
    """A tab another module provides, if it exists; a broken one is skipped, not fatal."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    cls = next((getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)), None)
    if cls is None:
        cls = next((v for k, v in vars(mod).items() if isinstance(v, type) and issubclass(v, QWidget)
                    and v.__module__ == mod.__name__ and k.endswith(("Panel", "Widget", "Tab"))), None)
    if cls is None:
        return None
    try:
        return cls(parent=parent)
    except TypeError:
        try:
            return cls()
        except Exception:
            return None
    except Exception:
        return None


def _notify(widget, method: str, *args):
    fn = getattr(widget, method, None)
    if callable(fn):
        try:
            fn(*args)
        except Exception:  # another module's tab must not break the run's ending
            pass
