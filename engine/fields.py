"""The field helper ``F``: a typed, documented setting of a run file.

A leaf module (it imports nothing of the engine), so that the run-file sections
(``engine.config``) and the sections other packages own (``engine.distributed.config``) build on
it without importing each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field


def F(default=dataclasses.MISSING, help: str = "", choices=None, default_factory=dataclasses.MISSING,
      minimum=None, maximum=None, advanced: bool = False):
    """A config field with its help text and constraints (shown by the GUI, checked by validate)."""
    md = {"help": help}
    if choices is not None:
        md["choices"] = list(choices)
    if minimum is not None:
        md["min"] = minimum
    if maximum is not None:
        md["max"] = maximum
    md["advanced"] = advanced
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=md)
    return field(default=default, metadata=md)
