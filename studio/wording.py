"""The window's words for the engine's: run-file keys become the controls that set them.

The engine speaks run-file (``set data.skip_bad_lines: true``), which is right for the CLI; the
window must name its own controls ("tick “Skip bad lines” (Data tab › Advanced)") and offer to go
there. Every message the studio shows from the engine passes through :func:`window_text`, and
:func:`named_fields` says which controls a message names (the "Go to …" buttons).

A control is found by its run-file path (``data.skip_bad_lines``): the four form panels name their
editors ``field:<path>`` (studio/forms.py) and the panel that owns a section is fixed here, so a
field added to the engine is named correctly without touching this file.

Qt-free: the helper processes never need it, but tests read it without a window.
"""

from __future__ import annotations

import dataclasses
import re

from engine.config import DataConfig, ModelConfig, TrainConfig
from engine.methods import PARAMS

# Which panel holds each run-file section, and how the window calls that place.
SECTION_PANEL = {"model": "model", "data": "data", "method": "method", "train": "training", "output_dir": "training"}
PLACE = {"model": "Model panel", "data": "Data tab", "method": "Method panel", "training": "Training panel"}

# Controls whose label is not their field's (the rich editors panels build themselves).
SPECIAL_LABELS = {
    "model.name_or_path": "Base model",
    "data.path": "Data file",
    "data.columns": "Column mapping",
    "data.format": "Format",
    "method.name": "Method",
    "method.target_modules": "Target modules",
    "output_dir": "Output folder",
    "train.distributed": "Where to run",
    "train.distributed.strategy": "Strategy",
    "train.distributed.num_processes": "Processes",
    "train.distributed.num_machines": "Nodes",
}



def _names(*klasses) -> str:
    names = {f.name for k in klasses for f in dataclasses.fields(k)}
    return "|".join(sorted(names, key=len, reverse=True))


# Only real field names count: "data.jsonl" in a file name is not the key "data.<field>".
_KEY = (r"\b(?:model\.(?:" + _names(ModelConfig) + r")|data\.(?:" + _names(DataConfig) + r")(?:\.[A-Za-z0-9_]+)?"
        r"|method\.(?:" + _names(*PARAMS.values()) + r")|train\.(?:" + _names(TrainConfig) + r")(?:\.[A-Za-z0-9_]+)?"
        r"|output_dir)\b")
KEY_RE = re.compile(_KEY)
# "set data.skip_bad_lines: true", "Set data.format", "set model.offline: false"
# a value after the colon: true/false, or a word that ends the clause ("(train.optimizer: adamw_8bit)");
# "field data.format: cannot tell …" is a location and its problem, not a value
_SET_RE = re.compile(r"(?:\b([Ss])et )?(" + _KEY + r")(?::\s*(?:(true|false)\b|([\w\-]+)(?=[)\],;]|\.(?:\s|$)|$)))?")
_PHRASES = [
    (re.compile(r"\s*in the run file\b"), ""),
    (re.compile(r"\bthe run file's\b"), "the"),
    # the engine's estimate notes say "batch × max_length" (the field, bare); after _SET_RE, so a
    # full key ("data.max_length") has already become the control's name with its place
    (re.compile(r"(?<![.\w“])max_length\b"), "“Max length”"),
]
# "report it" is for the project's own faults; the user's mistakes are theirs to fix.
_REPORT = re.compile(r"[;,]? ?(?:and )?if it persists, report it(?: with the run's events\.jsonl)?|"
                     r"[;,]? ?(?:please )?report (?:it|this)(?: with the run's events\.jsonl)?")


def base_path(path: str) -> str:
    """``data.columns.prompt`` → ``data.columns`` (the control is the whole mapping); nested
    sections (``train.distributed.num_processes``) keep their whole path."""
    parts = path.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[:2] == ["data", "columns"] else path


def _is_advanced(path: str) -> bool:
    section, _, name = path.partition(".")
    klass = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}.get(section)
    if klass is None:
        return False
    f = {f.name: f for f in dataclasses.fields(klass)}.get(name)
    return bool(f is not None and f.metadata.get("advanced"))


def control_label(path: str) -> str:
    """The label of the control that sets ``path`` (no quotes): ``Skip bad lines``."""
    path = base_path(path)
    if path in SPECIAL_LABELS:
        return SPECIAL_LABELS[path]
    from studio.forms import field_label  # the forms' own labels, so the two never disagree

    return field_label(path.rsplit(".", 1)[-1])


def panel_of(path: str) -> str:
    """The key of the panel that holds the control for ``path``."""
    return SECTION_PANEL.get(path.split(".", 1)[0], "training")


def place(path: str) -> str:
    """Where the control sits: ``Data tab`` or ``Data tab › Advanced``."""
    where = PLACE.get(panel_of(path), "")
    if path.startswith("train.distributed"):
        return where + " › Where to run"
    if _is_advanced(base_path(path)) and path not in SPECIAL_LABELS:
        where += " › Advanced"
    return where


def control_name(path: str) -> str:
    """``“Skip bad lines” (Data tab › Advanced)``: how a message names a control."""
    return f"“{control_label(path)}” ({place(path)})"


def named_fields(text: str) -> list[str]:
    """The run-file paths a message names, in order, each once (whole-mapping paths for columns)."""
    out: list[str] = []
    for m in KEY_RE.finditer(text or ""):
        p = base_path(m.group(0))
        if p not in out:
            out.append(p)
    return out


def _set_phrase(m: re.Match) -> str:
    cap, path, value = m.group(1), base_path(m.group(2)), m.group(3) or m.group(4)
    name = control_name(path)
    if cap is None and value is None:
        return name
    if cap is None and value not in ("true", "false"):
        return f"{name} set to {value}"
    if value == "true":
        verb = "tick"
    elif value == "false":
        verb = "untick"
    else:
        verb = "set"
    if cap == "S":
        verb = verb.capitalize()
    if value in (None, "true", "false"):
        return f"{verb} {name}"
    return f"{verb} {name} to {value}"


def window_text(text: str, user_error: bool = True) -> str:
    """``text`` with every run-file key replaced by the control that sets it, and the CLI's
    phrases left out ("in the run file"; "report it" for the user's own mistakes)."""
    if not text:
        return text
    text = _SET_RE.sub(_set_phrase, text)
    for pattern, repl in _PHRASES:
        text = pattern.sub(repl, text)
    if user_error:
        text = _REPORT.sub("", text)
    return re.sub(r"\.\.(?!\.)", ".", text)
