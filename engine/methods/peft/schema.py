"""Read peft's config dataclasses from their source, without importing peft.

Why not ``dataclasses.fields(peft.VeraConfig)``: importing peft imports torch and transformers
(about 8 s here), and the run file, the CLI's ``--set`` and the studio's method list must work
before that (the studio builds its method list on the GUI thread at start-up). Parsing the
config modules with ``ast`` takes about 60 ms for all of peft, so the parameter classes of the
peft methods are generated eagerly at import (``engine.methods.peft.catalog``) and looking up a
method's parameter class stays a plain dict lookup. tests/engine/test_methods_more.py checks every generated field against the
imported dataclass (names, defaults, choices), so a peft release that changes a config shows up
as a failing test, not as a silently wrong default.

A field is offered when its type is one a run file can express (bool, int, float, str, a
``Literal`` of strings, a list of strings or ints, optionally ``None``) and its default is a
literal; anything else keeps peft's default.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import types
import typing
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, Union

from engine import atomic, paths

_MISSING = object()

# What peft's annotations may mention; an unknown name means "not expressible in a run file".
_NAMESPACE = {"Optional": Optional, "Union": Union, "Literal": Literal, "Any": Any, "list": list,
              "dict": dict, "str": str, "int": int, "float": float, "bool": bool, "List": list,
              "Dict": dict, "typing": typing}


@dataclass
class PeftField:
    name: str
    kind: str                    # bool | int | float | str | list_str | list_int | str_or_list | int_or_list
    nullable: bool
    default: Any
    help: str
    choices: list | None = None


@lru_cache(maxsize=1)
def peft_root() -> Path | None:
    # find_spec of a top-level package locates it without running its __init__.
    spec = importlib.util.find_spec("peft")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def peft_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("peft")
    except Exception:
        return None


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _class_index() -> dict[str, Path]:
    """Config class name → the module defining it, from one text scan of peft's config modules."""
    root = peft_root()
    index: dict[str, Path] = {}
    if root is None:
        return index
    for f in [root / "config.py", *sorted(root.glob("tuners/*/config.py"))]:
        for name in re.findall(r"^class (\w+)\(", f.read_text(encoding="utf-8"), flags=re.M):
            index.setdefault(name, f)
    return index


@cache
def find_class(name: str, hint: Path | None = None) -> tuple[Path, ast.ClassDef] | None:
    """The ClassDef of a peft config class (looked up in ``hint`` first: same-named classes exist)."""
    for f in (hint, _class_index().get(name)):
        if f is None or not f.exists():
            continue
        for node in _parse(f).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return f, node
    return None


def has_bnb_layer(tuner: str) -> bool:
    """Whether peft ships bitsandbytes layers for this tuner (it can train on a 4/8-bit base)."""
    root = peft_root()
    return bool(root and (root / "tuners" / tuner / "bnb.py").exists())


def class_doc(name: str, tuner: str) -> str:
    found = find_class(name, _tuner_file(tuner))
    return (ast.get_docstring(found[1]) or "") if found else ""


def _tuner_file(tuner: str) -> Path | None:
    root = peft_root()
    return root / "tuners" / tuner / "config.py" if root else None


def fields_of(class_name: str, tuner: str) -> list[PeftField] | None:
    """The offered fields of a peft config class in definition order, base classes first
    (dataclass semantics: a subclass redefinition replaces the value, not the position)."""
    found = find_class(class_name, _tuner_file(tuner))
    if found is None:
        return None
    chain = _mro(found)
    order: list[str] = []
    raw: dict[str, tuple] = {}
    for _path, cls in chain:
        docs = _arg_docs(ast.get_docstring(cls) or "")
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                n = node.target.id
                if n not in raw:
                    order.append(n)
                raw[n] = (node, docs.get(n, ""))
    out = []
    for n in order:
        fld = _to_field(n, *raw[n])
        if fld is not None:
            out.append(fld)
    return out


SCHEMA_VERSION = 2  # bump when the extraction below changes, so cached schemas are rebuilt


def schema(methods: dict[str, str]) -> dict[str, list[PeftField] | None]:
    """``fields_of`` for every ``{tuner: config class}``, cached per peft version in the user cache:
    parsing peft's sources costs ~0.1–0.5 s, reading the cached JSON ~5 ms."""
    version = peft_version()
    path = _cache_path(version)
    if path is not None and path.exists():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("methods") == methods:
                return {k: None if v is None else [PeftField(**f) for f in v]
                        for k, v in cached["fields"].items()}
        except (OSError, ValueError, TypeError):
            pass
    out = {tuner: fields_of(cls, tuner) for tuner, cls in methods.items()}
    if path is not None and version is not None:
        data = {"methods": methods, "fields": {k: None if v is None else [asdict(f) for f in v]
                                               for k, v in out.items()}}
        try:  # a read-only cache only costs the parse next time
            atomic.write_text(path, json.dumps(data))
        except OSError:
            pass
    return out


def _cache_path(version: str | None) -> Path | None:
    root = peft_root()
    if root is None or version is None:
        return None
    stamp = int((root / "tuners").stat().st_mtime)  # a reinstall of the same version re-parses
    return paths.cache_dir() / f"peft-schema-{version}-{stamp}-v{SCHEMA_VERSION}.json"


def _mro(found) -> list[tuple[Path, ast.ClassDef]]:
    """Base classes first (single inheritance is all peft's configs use)."""
    path, cls = found
    chain = [(path, cls)]
    for base in cls.bases:
        bname = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
        if not bname or bname in ("object",):
            continue
        parent = find_class(bname, path)
        if parent is not None:
            chain = _mro(parent) + chain
    return chain


def _arg_docs(doc: str) -> dict[str, str]:
    """``name (`type`): text`` entries of a Google-style docstring's Args section."""
    out: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        stripped = line.strip()
        head = stripped.split(" (", 1)[0] if " (" in stripped and stripped.endswith(":") else None
        if head and head.isidentifier() and line.startswith(" " * 4) and not line.startswith(" " * 12):
            current = head
            out[current] = ""
        elif current and stripped:
            out[current] = (out[current] + " " + stripped).strip()
        elif not stripped:
            current = None if current and out.get(current) else current
    return out


def _call_kwargs(node) -> dict:
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "field":
        return {k.arg: k.value for k in node.keywords if k.arg}
    return {}


def _literal(node):
    try:
        return ast.literal_eval(node)
    except Exception:
        return _MISSING


def _to_field(name: str, node: ast.AnnAssign, doc_help: str) -> PeftField | None:
    try:
        tp = eval(ast.unparse(node.annotation), dict(_NAMESPACE))  # noqa: S307 - peft's own annotations
    except Exception:
        return None  # a peft-internal type (an enum, a nested config): not run-file material
    kind, nullable, choices = _kind(tp)
    if kind is None:
        return None
    kw = _call_kwargs(node.value) if node.value is not None else {}
    if kw:
        if "default" in kw:
            default = _literal(kw["default"])
        elif "default_factory" in kw:
            fac = getattr(kw["default_factory"], "id", None)
            default = [] if fac == "list" else ({} if fac == "dict" else _MISSING)
        else:
            default = _MISSING
        help_text = _metadata_help(kw.get("metadata"))
    elif node.value is not None:
        default, help_text = _literal(node.value), ""
    else:
        return None
    if default is _MISSING or isinstance(default, dict):
        return None
    if default is None and not nullable:
        nullable = True
    return PeftField(name, kind, nullable, default, " ".join((help_text or doc_help).split()), choices)


def _metadata_help(meta) -> str:
    if isinstance(meta, ast.Dict):
        for key, value in zip(meta.keys, meta.values, strict=False):
            if key is not None and _literal(key) == "help":
                text = _literal(value)
                if isinstance(text, tuple):  # a stray trailing comma in peft makes a 1-tuple
                    text = " ".join(t for t in text if isinstance(t, str))
                return text if isinstance(text, str) else ""
    return ""


def _kind(tp) -> tuple[str | None, bool, list | None]:
    """(kind, nullable, choices) of an annotation; kind None when a run file cannot express it."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        nullable = type(None) in args
        rest = [a for a in args if a is not type(None)]
        kinds = {_kind(a)[0] for a in rest}
        if len(rest) == 1:
            k, _, ch = _kind(rest[0])
            return k, nullable, ch
        if kinds == {"list_str", "str"}:
            return "str_or_list", nullable, None
        if kinds == {"list_int", "int"}:
            return "int_or_list", nullable, None
        return None, nullable, None
    if origin is Literal:
        vals = list(typing.get_args(tp))
        if all(isinstance(v, str) for v in vals):
            return "str", False, vals
        return None, False, None
    if origin is list:
        (el,) = typing.get_args(tp) or (str,)
        return {str: "list_str", int: "list_int"}.get(el), False, None
    if tp is list:
        return "list_str", False, None
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(tp), False, None
