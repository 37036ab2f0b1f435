"""The errors a user can fix (DESIGN §2.7): one ``UserError`` base.

A leaf module, so that any part of the engine can raise a ``ConfigError`` naming a run-file
field without importing ``engine.config`` (which imports the sections of other packages).
"""

from __future__ import annotations

import dataclasses
from typing import Any


class UserError(ValueError):
    """A mistake the user can fix; ``str(e)`` says what is wrong and what to do."""

    user_facing = True


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
