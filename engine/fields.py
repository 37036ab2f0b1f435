"""Typed, documented settings: the field helper ``F`` and value coercion.

Every setting of a run file is a dataclass field made with :func:`F`, whose ``metadata`` carries
its help text (``help``), the closed set of values where there is one (``choices``), bounds
(``min``/``max``) and whether the studio tucks it under "advanced". The studio builds its forms
from this metadata, the CLI's ``--set`` parses through :func:`coerce_value`, and validation
checks against it, so a new field appears everywhere at once (litgpt's ``args.py`` habit).

This module is a leaf: method parameter classes (``engine.methods``) and the run-file sections
(``engine.config``) both build on it without importing each other.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import field, fields
from typing import Any

from engine.errors import ConfigError


def F(default=dataclasses.MISSING, help: str = "", choices=None, default_factory=dataclasses.MISSING,
      minimum=None, maximum=None, advanced: bool = False, tasks=None, path: str | None = None):
    """A config field with its help text and constraints (shown by the GUI, checked by validate).
    ``tasks``: the training tasks (train.task) the field applies to, when not all (forms show it
    only for those). ``path``: the value names a ``file`` or a ``folder`` (forms offer a picker)."""
    md = {"help": help}
    if path is not None:
        md["path"] = path
    if tasks is not None:
        md["tasks"] = list(tasks)
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


def field_help(klass, name: str) -> str:
    """The help text of field ``name`` of dataclass ``klass`` ('' when it has none)."""
    for f in fields(klass):
        if f.name == name:
            return f.metadata.get("help", "")
    return ""


def to_dict(obj, first: str | None = None) -> dict:
    """A dataclass's fields as plain YAML-ready values (tuples become lists); ``first`` is put
    first (a method's ``name`` reads better at the top)."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):   # a nested section, e.g. train.distributed
            out[f.name] = to_dict(v)
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
    if first is not None and first in out:
        out = {first: out.pop(first), **out}
    return out


def from_dict(klass, d: dict, prefix: str):
    """``klass(**d)`` with every value coerced to its field's type; an unknown key or a bad value
    is a ConfigError naming ``prefix.key``."""
    if not isinstance(d, dict):
        raise ConfigError(prefix, "must be a mapping of fields", d)
    names = [f.name for f in fields(klass)]
    # A section may name keys that users bring from the libraries' own configs but that mean
    # nothing here (``RETIRED = {key: what to do instead}``): say what to use, not just "unknown".
    retired = getattr(klass, "RETIRED", {})
    kwargs = {}
    for key, value in d.items():
        if key in retired:
            raise ConfigError(f"{prefix}.{key}", f"is not a field: {retired[key]}")
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", "unknown field", choices=[n for n in names if n != "name"])
        kwargs[key] = coerce_value(klass, key, value, f"{prefix}.{key}")
    return klass(**kwargs)


def _type_info(tp) -> tuple[set[type], bool]:
    """The accepted base types of an annotation, and whether None is allowed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        allowed, nullable = set(), False
        for a in args:
            if a is type(None):
                nullable = True
            else:
                allowed |= _type_info(a)[0]
        return allowed, nullable
    if origin is not None:
        return {origin}, False
    if tp is Any:
        return {object}, True
    return {tp}, False


@functools.cache  # get_type_hints re-evaluates annotations each call; forms validate on every keystroke
def _resolved_types(klass) -> dict[str, Any]:
    return typing.get_type_hints(klass)


def coerce_value(klass, fname: str, value, path: str):
    """Convert ``value`` to the field's type or raise ConfigError. Used by from_dict and the GUI."""
    tp = _resolved_types(klass)[fname]
    if dataclasses.is_dataclass(tp):      # a nested section: a mapping of its own fields
        if isinstance(value, tp):
            return value
        return from_dict(tp, value if value is not None else {}, path)
    allowed, nullable = _type_info(tp)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")
                         and str not in allowed):
        if nullable:
            return None
        raise ConfigError(path, "must not be empty", value)
    if object in allowed:
        return value
    if bool in allowed:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if int not in allowed:
            raise ConfigError(path, "must be true or false", value)
    if int in allowed and float not in allowed:
        if isinstance(value, bool):
            raise ConfigError(path, "must be a whole number", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if str not in allowed:
            raise ConfigError(path, "must be a whole number", value)
    if float in allowed:
        if isinstance(value, bool):
            raise ConfigError(path, "must be a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        if str not in allowed:
            raise ConfigError(path, "must be a number", value)
    if list in allowed:
        if isinstance(value, (list, tuple)):
            return [v if isinstance(v, dict) else str(v) for v in value]  # data.sources holds mappings
        if isinstance(value, str) and (str not in allowed or "," in value):
            return [s.strip() for s in value.split(",") if s.strip()]
        if str not in allowed:
            raise ConfigError(path, "must be a list", value)
    if dict in allowed:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(path, "must be a mapping", value)
    if str in allowed:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, list) and list in allowed:
            return value
        raise ConfigError(path, "must be text", value)
    raise ConfigError(path, f"has an unsupported type {tp}", value)


def check_field(obj, f, path: str) -> None:
    """Raise ConfigError when field ``f`` of ``obj`` has a wrong type, is not one of its choices
    or is out of its bounds."""
    v = getattr(obj, f.name)
    md = f.metadata
    coerce_value(type(obj), f.name, v, path)
    if "choices" in md and v not in md["choices"]:
        raise ConfigError(path, "is not one of the choices", v,
                          choices=["null" if c is None else c for c in md["choices"]])
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "min" in md and v < md["min"]:
            raise ConfigError(path, f"must be ≥ {md['min']}", v)
        if "max" in md and v > md["max"]:
            raise ConfigError(path, f"must be ≤ {md['max']}", v)


def validate(obj, prefix: str) -> None:
    """Check every field of ``obj`` (and of its nested sections); raise ConfigError naming the
    first bad one."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            validate(v, f"{prefix}.{f.name}")
        else:
            check_field(obj, f, f"{prefix}.{f.name}")


def errors(obj, prefix: str) -> list[ConfigError]:
    """Every bad field of ``obj`` and its nested sections (the GUI marks them all), in field order."""
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out.extend(errors(v, f"{prefix}.{f.name}"))
            continue
        try:
            check_field(obj, f, f"{prefix}.{f.name}")
        except ConfigError as e:
            out.append(e)
    return out


def is_section(f: dataclasses.Field) -> bool:
    """Field ``f`` is a nested section (a dataclass of its own fields, e.g. train.distributed)
    rather than a value: forms give it a group of its own."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return dataclasses.is_dataclass(default)
