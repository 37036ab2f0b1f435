"""Every QSettings key the studio uses, in one typed table (Orange's canvas/config.py pattern).

QSettings returns strings for everything on some back ends (the INI format stores ``true`` as
text), so each key declares its type and every read converts; a corrupt value silently falls
back to the default instead of crashing start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "peft-studio"
APPLICATION = "PEFT Studio"


@dataclass(frozen=True)
class Key:
    name: str
    type: type
    default: Any
    doc: str


KEYS: dict[str, Key] = {k.name: k for k in [
    Key("window/geometry", bytes, b"", "Main window geometry (QWidget.saveGeometry)."),
    Key("window/state", bytes, b"", "Dock and toolbar layout (QMainWindow.saveState)."),
    Key("window/central_tab", int, 0, "Index of the central tab last shown."),
    Key("last/config", str, "", "The run configuration last shown in the forms, as YAML."),
    Key("last/run_file", str, "", "The run file last opened or saved."),
    Key("last/data_dir", str, "", "Folder of the last data file opened."),
    Key("last/model_dir", str, "", "Folder of the last local model or .gguf opened."),
    Key("recent/runs", list, [], "Run folders started or opened, newest first."),
    Key("active/run_dir", str, "", "The run folder shown in the monitor; re-attached on start-up."),
    Key("active/pid", int, 0, "Engine process id of a run left running when the window closed."),
    Key("monitor/smoothing", int, 60, "Loss smoothing slider, 0-99 (EMA weight in percent)."),
    Key("monitor/log_scale", bool, False, "Loss plot on a log scale."),
    Key("estimate/gpu", str, "", "GPU chosen for the memory estimate ('' = detected)."),
    Key("ui/show_advanced", bool, False, "Show advanced fields in the forms."),
    Key("ui/auto_run_name", bool, True, "Name each run folder after its model, method and data."),
    Key("data/column_maps", str, "{}", "Column mappings by data file (JSON: {path: {role: column}})."),
    Key("data/formats", str, "{}", "The data format chosen by data file, when not auto (JSON: {path: format})."),
]}

MAX_RECENT = 15


def _convert(key: Key, raw):
    if raw is None:
        return key.default
    t = key.type
    if t is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).lower() in ("true", "1", "yes", "on")
    if t is int:
        return int(raw)
    if t is bytes:
        return bytes(raw.data()) if isinstance(raw, QByteArray) else bytes(raw)
    if t is list:
        if isinstance(raw, list):
            return [str(x) for x in raw]
        # Stored as JSON text: the INI back end turns single-item lists into plain strings.
        value = json.loads(raw)
        return [str(x) for x in value] if isinstance(value, list) else key.default
    return str(raw)


class Settings:
    """Typed access to the studio's QSettings. ``Settings(qsettings)`` lets tests use a temp file."""

    def __init__(self, qsettings: QSettings | None = None):
        self._q = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

    def get(self, name: str):
        key = KEYS[name]
        try:
            return _convert(key, self._q.value(name, None))
        except (ValueError, TypeError, json.JSONDecodeError):
            return key.default

    def set(self, name: str, value) -> None:
        key = KEYS[name]
        if key.type is list:
            self._q.setValue(name, json.dumps(list(value)))
        elif key.type is bytes:
            self._q.setValue(name, QByteArray(bytes(value)))
        else:
            self._q.setValue(name, key.type(value))

    def remove(self, name: str) -> None:
        self._q.remove(KEYS[name].name)

    def add_recent_run(self, run_dir: str) -> None:
        runs = [r for r in self.get("recent/runs") if r != run_dir]
        self.set("recent/runs", [run_dir, *runs][:MAX_RECENT])

    def sync(self) -> None:
        self._q.sync()
