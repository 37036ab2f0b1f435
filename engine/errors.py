"""The errors a user can fix: one ``UserError`` base (DESIGN §2.7).

Anything the user can put right — a run-file field, a data file, a model name, an export
target — raises a subclass of :class:`UserError` whose ``str()`` is a complete sentence for a
person. The CLI prints it as ``error: …`` with exit code 2 and no traceback
(``engine.cli``), a training run turns it into a ``failed`` event without a traceback
(``engine.training``), and the studio shows it verbatim (``user_facing``). Every other
exception is the project's own fault and keeps its traceback.

Where each one is raised:

* :class:`ConfigError` — a run-file field or override (``path`` names it, e.g. ``train.lr``);
* :class:`ModelError` — a model that cannot be found or loaded (``engine.models``);
* ``engine.data.DataError`` — a data file (names the file, line and field);
* ``engine.export.ExportError`` — an export that cannot be done.

``UserError`` is a ``ValueError`` because every one of them is a bad value given to the engine,
and code written before this base existed (and libraries calling us) catch ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class UserError(ValueError):
    """A mistake the user can fix; ``str(e)`` says what is wrong and what to do."""

    user_facing = True  # the studio shows such messages as they are (studio.messages)


class ConfigError(UserError):
    """A run file or override is invalid. ``path`` names the field, e.g. ``train.lr``;
    ``value`` is the offending value (when known) and ``choices`` the valid ones."""

    def __init__(self, path: str, message: str, value: Any = dataclasses.MISSING, choices=None):
        self.path = path
        self.value = value
        self.choices = list(choices) if choices is not None else None
        text = f"{path}: {message}" if path else message
        if value is not dataclasses.MISSING:
            text += f" (got {value!r})"
        if self.choices:
            text += f"; valid: {', '.join(map(str, self.choices))}"
        self.message = message
        super().__init__(text)


class ModelError(UserError):
    """The model cannot be found or loaded; the message says what was looked for and what to do."""



def error_field(exc: BaseException) -> str | None:
    """The run-file setting a user error is about: a ConfigError's ``path``, a DataError's ``field``
    when it names a data setting (else ``data.path``: the file itself), ``model.name_or_path`` for a
    ModelError; None for anything else."""
    if isinstance(exc, ConfigError):
        return exc.path or None
    if isinstance(exc, ModelError):
        return "model.name_or_path"
    field = getattr(exc, "field", None)
    if isinstance(exc, UserError) and hasattr(exc, "file"):  # engine.data.DataError (a layer above)
        return field if isinstance(field, str) and field.startswith("data.") else "data.path"
    return None
