"""Collects the panels' fields into one RunConfig, validates it, and marks every bad field.

Validation is the engine's own (``RunConfig.errors()``) plus what only the studio can check
cheaply on every keystroke (the data file exists). Changes are coalesced: a form that sets
twenty fields at once is validated once.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.config import ConfigError, RunConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_path(p: str) -> Path | None:
    """Where a relative data/model path points, as the engine resolves it (cwd, then the repo)."""
    path = Path(p).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    return next((c for c in candidates if c.exists()), None)


def studio_checks(cfg: RunConfig) -> dict[str, str]:
    errors = {}
    if cfg.data.path and find_path(cfg.data.path) is None:
        errors["data.path"] = f"file not found: {cfg.data.path}"
    elif not cfg.data.path:
        errors["data.path"] = "choose a data file"
    if cfg.data.validation_path and find_path(cfg.data.validation_path) is None:
        errors["data.validation_path"] = "file not found"
    if cfg.train.distributed.num_machines > 1:
        # Start runs on this machine; several machines start from the script the user submits.
        errors["train.distributed.num_machines"] = ("a run over several machines starts from its cluster "
                                                    "script: use Write cluster script, then sbatch it")
    name = cfg.model.name_or_path
    if not name:
        errors["model.name_or_path"] = "choose a model"
    elif name.lower().endswith(".gguf") and find_path(name) is None:
        errors["model.name_or_path"] = "GGUF file not found"
    return errors


def _describe(e: ConfigError) -> str:
    if e.choices and "choices" in e.message:
        return f"{e.message}: {', '.join(map(str, e.choices))}"
    return e.message


class ConfigModel(QObject):
    """The form's RunConfig and everything that is wrong with it.

    ``errors`` ({run-file path: message}) gate Start. They come from the fields themselves, the
    engine's validation, cheap studio checks, and *blockers*: facts a background job found
    (the data preview rejected the file, the model cannot be found, the method does not fit the
    model, the estimate refused the config). A form panel reports what its own jobs found from
    ``values()``; any other part reports with ``set_blocker``. ``warnings`` never gate Start: they
    are values a practitioner would question (studio/sanity.py).
    """

    sig_config = Signal(object)    # the current RunConfig (or None if it cannot be built at all)
    sig_errors = Signal(object)    # {path: message}; empty when Start may run
    sig_warnings = Signal(object)  # {path: message}: worth a second look, Start still runs

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = self.data = self.method = self.training = None
        self.config: RunConfig | None = None
        self.errors: dict[str, str] = {}
        self.warnings: dict[str, str] = {}
        self.model_info: dict | None = None
        self._blockers: dict[str, tuple[str, str]] = {}  # source → (path, message)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.validate_now)

    def bind(self, model, data, method, training) -> None:
        """The four form panels, once built (each has values, set_values, set_errors, sig_changed)."""
        self.model, self.data, self.method, self.training = model, data, method, training
        for panel in (model, data, method, training):
            panel.sig_changed.connect(self._timer.start)

    def collect(self) -> tuple[RunConfig | None, dict[str, str]]:
        errors: dict[str, str] = {}
        sections = {}
        for name, panel in (("model", self.model), ("data", self.data), ("method", self.method),
                            ("train", self.training)):
            vals, errs = panel.values()
            sections[name] = vals
            errors.update(errs)
        sections["output_dir"] = self.training.output(sections)
        try:
            cfg = RunConfig.from_dict(sections, "the form")
        except ConfigError as e:
            errors.setdefault(e.path, _describe(e))
            return None, errors
        for e in cfg.errors():
            errors.setdefault(e.path, _describe(e))
        for path, msg in studio_checks(cfg).items():
            errors.setdefault(path, msg)
        for path, msg in self._blockers.values():
            errors.setdefault(path, msg)
        return cfg, errors

    def validate_now(self) -> tuple[RunConfig | None, dict[str, str]]:
        self._timer.stop()
        cfg, errors = self.collect()
        self.config, self.errors = cfg, errors
        from studio.sanity import sanity_warnings

        self.warnings = sanity_warnings(cfg, self.model_info) if cfg is not None else {}
        for panel in (self.model, self.data, self.method, self.training):
            panel.set_errors(errors)
            if hasattr(panel, "set_warnings"):
                panel.set_warnings(self.warnings)
        self.sig_errors.emit(errors)
        self.sig_warnings.emit(self.warnings)
        if cfg is not None:
            self.sig_config.emit(cfg)
        return cfg, errors

    def revalidate(self) -> None:
        """Validate again soon (a background job learnt something about the current form)."""
        self._timer.start()

    def set_blocker(self, source: str, path: str | None, message: str = "") -> None:
        """What ``source`` (a panel's job) knows to be wrong with the form, at ``path``; ``None``
        clears it. Start stays off while any blocker is set."""
        new = (path, message) if path else None
        if self._blockers.get(source) != new:
            if new is None:
                self._blockers.pop(source, None)
            else:
                self._blockers[source] = new
            self.revalidate()

    def set_model_info(self, info: dict | None) -> None:
        """The chosen model's facts (engine inspect_model), for the sanity warnings."""
        self.model_info = info
        self.revalidate()

    def set_config(self, cfg: RunConfig) -> None:
        """Show a whole config in the forms (a run file, a past run, the demo)."""
        self.model.set_values(cfg.model)
        self.data.set_values(cfg.data)
        self.method.set_values(cfg.method)
        self.training.set_values(cfg.train, cfg.output_dir)
        self.validate_now()
