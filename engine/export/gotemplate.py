"""A renderer for the subset of Go's text/template that Ollama chat templates use.

Written by hand because no maintained Python package renders Go templates: the only one on PyPI
(cognihub-pygotemplate 0.0.2) wraps Go through CGo and needs a Go-built library. The subset is
what Ollama's own templates (and the ones ``engine.export.ollama`` writes) use:

* text and actions ``{{ … }}`` with the trim markers ``{{-`` and ``-}}`` (all adjacent white
  space, newlines included, is removed);
* ``.Field``, ``$.Field``, ``$var``, ``$var.Field``; string, number and ``true``/``false`` literals;
* ``if`` / ``else if`` / ``else`` / ``end``, ``range $i, $v := pipeline`` (and ``range pipeline``),
  variable declarations ``$x := pipeline``;
* the functions ``eq ne lt le gt ge and or not len slice index`` and parenthesised calls.

Truth follows Go: false, 0, "", nil and empty collections are false. Anything outside the subset
raises ``TemplateError`` rather than rendering something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class TemplateError(ValueError):
    """The template uses Go template syntax outside the supported subset, or is malformed."""


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _truth(v) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


# ---- parsing --------------------------------------------------------------------------------

@dataclass
class _Node:
    kind: str                     # text | action | if | range | assign
    text: str = ""
    expr: str = ""
    body: list = field(default_factory=list)
    branches: list = field(default_factory=list)   # if: [(expr or None, body)]
    var: str | None = None        # range/assign
    key: str | None = None        # range index variable


def _lex(src: str) -> list[tuple[str, str]]:
    """[(kind, value)]: ("text", s) and ("action", inner) with trim markers applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        pos = m.end()
        if m.group(3):
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    out.append(("text", src[pos:]))
    return out


def _parse(tokens: list[tuple[str, str]], i: int = 0, stop: tuple[str, ...] = ()) -> tuple[list[_Node], int, str]:
    nodes: list[_Node] = []
    while i < len(tokens):
        kind, val = tokens[i]
        i += 1
        if kind == "text":
            if val:
                nodes.append(_Node("text", text=val))
            continue
        if val.startswith("/*"):
            continue  # comment
        word = val.split(None, 1)[0] if val else ""
        if word in ("end", "else") or val.startswith("else if"):
            if not stop:
                raise TemplateError(f"unexpected {{{{ {val} }}}}")
            return nodes, i, val
        if word == "if":
            branches = []
            expr = val[2:].strip()
            while True:
                body, i, closer = _parse(tokens, i, ("end", "else"))
                branches.append((expr, body))
                if closer == "end":
                    break
                if closer.startswith("else if"):
                    expr = closer[len("else if"):].strip()
                else:
                    body, i, closer = _parse(tokens, i, ("end",))
                    if closer != "end":
                        raise TemplateError("{{ else }} must be the last branch of an if")
                    branches.append((None, body))
                    break
            nodes.append(_Node("if", branches=branches))
        elif word == "range":
            spec = val[5:].strip()
            key = var = None
            m = re.match(r"^(\$\w*)\s*(?:,\s*(\$\w*))?\s*:=\s*(.+)$", spec, re.S)
            if m:
                if m.group(2):
                    key, var, spec = m.group(1), m.group(2), m.group(3)
                else:
                    var, spec = m.group(1), m.group(3)
            body, i, closer = _parse(tokens, i, ("end", "else"))
            if closer != "end":
                raise TemplateError("{{ range … }}{{ else }} is not supported")
            nodes.append(_Node("range", expr=spec, body=body, var=var, key=key))
        elif word in ("with", "define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{ {word} }}}} is outside the supported Go template subset")
        else:
            m = re.match(r"^(\$\w+)\s*(:?=)\s*(.+)$", val, re.S)
            if m:
                nodes.append(_Node("assign", var=m.group(1), expr=m.group(3), text=m.group(2)))
            else:
                nodes.append(_Node("action", expr=val))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return nodes, i, ""


# ---- expressions ----------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|`[^`]*`|[^\s()]+)')


def _tokenize_expr(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise TemplateError(f"cannot read {expr[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


def _group(tokens: list[str], i: int = 0) -> tuple[list, int]:
    """Nest parentheses: tokens → a list whose sub-lists are parenthesised commands."""
    out: list = []
    while i < len(tokens):
        t = tokens[i]
        i += 1
        if t == "(":
            sub, i = _group(tokens, i)
            out.append(sub)
        elif t == ")":
            return out, i
        else:
            out.append(t)
    return out, i


def _cmp_args(args):
    if len(args) < 2:
        raise TemplateError("comparison needs two arguments")
    return args


_FUNCS = {
    "eq": lambda *a: any(_cmp_args(a)[0] == b for b in a[1:]),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not _truth(a),
    "len": lambda a: len(a),
    "slice": lambda a, *ix: a[ix[0]:ix[1]] if len(ix) == 2 else a[ix[0]:] if ix else a,
    "index": lambda a, *ix: _index(a, ix),
}


def _index(a, ix):
    for k in ix:
        a = a[k]
    return a


class _Scope:
    def __init__(self, dot, root, variables=None):
        self.dot, self.root = dot, root
        self.vars = variables if variables is not None else {"$": root}

    def child(self, dot):
        return _Scope(dot, self.root, dict(self.vars))


def _field(obj, name: str):
    if isinstance(obj, dict):
        if name not in obj:
            return None
        return obj[name]
    if hasattr(obj, name):
        return getattr(obj, name)
    raise TemplateError(f"no field {name} in {type(obj).__name__}")


def _operand(tok, scope: _Scope):
    if isinstance(tok, list):
        return _command(tok, scope)
    if tok.startswith('"'):
        return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
    if tok.startswith("`"):
        return tok[1:-1]
    if tok in ("true", "false"):
        return tok == "true"
    if tok == "nil":
        return None
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if re.fullmatch(r"-?\d+\.\d*", tok):
        return float(tok)
    if tok == ".":
        return scope.dot
    if tok.startswith("."):
        obj = scope.dot
        for name in tok[1:].split("."):
            obj = _field(obj, name)
        return obj
    if tok.startswith("$"):
        head, *rest = tok.split(".")
        if head not in scope.vars:
            raise TemplateError(f"undefined variable {head}")
        obj = scope.vars[head]
        for name in rest:
            obj = _field(obj, name)
        return obj
    raise TemplateError(f"cannot evaluate {tok!r}")


def _command(toks: list, scope: _Scope):
    if not toks:
        raise TemplateError("empty command")
    head = toks[0]
    if isinstance(head, str) and head in ("and", "or"):
        result = None
        for t in toks[1:]:   # Go evaluates lazily and returns the deciding operand
            result = _operand(t, scope)
            if (head == "and") != _truth(result):
                return result
        return result
    if isinstance(head, str) and head in _FUNCS:
        return _FUNCS[head](*[_operand(t, scope) for t in toks[1:]])
    if len(toks) != 1:
        raise TemplateError(f"unknown function {head!r}")
    return _operand(head, scope)


def _eval(expr: str, scope: _Scope):
    if "|" in _tokenize_expr(expr):
        raise TemplateError("pipelines with | are outside the supported subset")
    grouped, _ = _group(_tokenize_expr(expr))
    return _command(grouped, scope)


# ---- execution ------------------------------------------------------------------------------

def _fmt(v) -> str:
    if v is None:
        return "<no value>"
    if v is True or v is False:
        return "true" if v else "false"
    return str(v)


def _exec(nodes: list[_Node], scope: _Scope, out: list[str]) -> None:
    for n in nodes:
        if n.kind == "text":
            out.append(n.text)
        elif n.kind == "action":
            out.append(_fmt(_eval(n.expr, scope)))
        elif n.kind == "assign":
            if n.text == "=" and n.var not in scope.vars:
                raise TemplateError(f"undefined variable {n.var}")
            scope.vars[n.var] = _eval(n.expr, scope)
        elif n.kind == "if":
            for expr, body in n.branches:
                if expr is None or _truth(_eval(expr, scope)):
                    _exec(body, scope.child(scope.dot), out)
                    break
        elif n.kind == "range":
            seq = _eval(n.expr, scope)
            items = list(seq.items()) if isinstance(seq, dict) else list(enumerate(seq or []))
            for k, v in items:
                inner = scope.child(v)
                if n.key:
                    inner.vars[n.key] = k
                if n.var:
                    inner.vars[n.var] = v
                _exec(n.body, inner, out)


class GoTemplate:
    """A parsed template; ``render(data)`` with ``data`` a dict (e.g. System, Messages)."""

    def __init__(self, source: str):
        self.source = source
        self.nodes, _, _ = _parse(_lex(source))

    def render(self, data: dict) -> str:
        out: list[str] = []
        _exec(self.nodes, _Scope(data, data), out)
        return "".join(out)


def render(source: str, data: dict) -> str:
    """Render Go template ``source`` with ``data``; TemplateError outside the subset."""
    return GoTemplate(source).render(data)
