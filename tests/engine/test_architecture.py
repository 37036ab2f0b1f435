"""The shape of the engine (docs/architecture.md) stays the shape: no import cycles, no method
names tested outside engine/methods, one typed event contract whose documentation is generated.

The layers themselves are import-linter's job (pyproject.toml, run by `make test`)."""

from __future__ import annotations

import ast
import dataclasses
import sys
import typing
from pathlib import Path

import pytest

from engine import events
from engine.methods import registered

REPO = Path(__file__).resolve().parents[2]


# ---- no import cycles ---------------------------------------------------------------------------

def _cycles(graph, package: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import grimp
    saw — function-level imports included."""
    adjacency = {m: {x for x in graph.find_modules_directly_imported_by(m) if x.startswith(package)}
                 for m in graph.modules}
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in adjacency[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for m in sorted(graph.modules):
            if m not in index:
                visit(m)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_the_engine_has_no_import_cycles():
    import grimp

    graph = grimp.build_graph("engine", include_external_packages=False)
    assert len(graph.modules) > 50  # the graph really is the engine's
    assert _cycles(graph, "engine") == []


def test_the_cycle_check_finds_a_cycle():
    """The check above can fail: a two-module cycle is found."""

    class Graph:
        modules = {"p.a", "p.b", "p.c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": {"p.a"}}[m]

    assert _cycles(Graph, "p") == [["p.a", "p.b"]]


# ---- method names are compared only inside engine/methods ---------------------------------------

def _method_name_tests(path: Path, names: set[str], root: Path = REPO) -> list[str]:
    """Lines of ``path`` that compare with a method name literal (``x == "lora"``,
    ``name in ("ia3", ...)``) or key a dict by method names (a per-method table)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def literals(node) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return []

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            found = [v for side in (node.left, *node.comparators) for v in literals(side) if v in names]
            if found:
                out.append(f"{path.relative_to(root)}:{node.lineno}: compares with {found}")
        elif isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
            if len(keys) >= 2:
                out.append(f"{path.relative_to(root)}:{node.lineno}: a table keyed by methods {keys}")
    return out


def test_no_code_outside_engine_methods_tests_method_names():
    """The estimator, the trainer, compare, export and the studio read a method's capabilities
    (engine.methods.spec), so a new method is handled by declaring them, not by finding every
    `if name == ...`."""
    names = set(registered())
    files = [p for folder in ("engine", "studio", "benchmarks", "scripts") for p in (REPO / folder).rglob("*.py")
             if (REPO / "engine" / "methods") not in p.parents]
    assert len(files) > 50
    offenders = [line for p in files for line in _method_name_tests(p, names)]
    assert offenders == []


def test_the_method_name_check_finds_comparisons(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text('if cfg.method.name == "dora":\n    pass\nok = name in ("ia3", "x")\n'
                   'lr = {"ia3": 1e-2, "full": 5e-5}\nfine = kind == "adapter"\n', encoding="utf-8")
    assert _method_name_tests(src, {"dora", "ia3", "full"}, tmp_path) == [
        "probe.py:1: compares with ['dora']", "probe.py:3: compares with ['ia3']",
        "probe.py:4: a table keyed by methods ['ia3', 'full']"]


# ---- the event contract -------------------------------------------------------------------------

def test_every_numeric_event_field_states_its_unit():
    for kind, klass in events.EVENT_CLASSES.items():
        hints = typing.get_type_hints(klass)
        for f in dataclasses.fields(klass):
            if f.metadata.get("internal"):
                continue
            base = {a for a in typing.get_args(hints[f.name]) if a is not type(None)} or {hints[f.name]}
            assert f.metadata.get("help"), f"{kind}.{f.name} has no description"
            if base & {int, float}:
                assert f.metadata.get("unit"), f"{kind}.{f.name} is a number without a unit"
                assert f"{f.name} [{f.metadata['unit']}]" in klass.__doc__, f"{kind}.{f.name}'s unit is not documented"


def test_events_serialise_as_the_json_they_always_were():
    """The typed events write the same objects as the dicts before them: kind and time first, the
    fields given (None as null), nothing for fields not given; unknown kinds and fields refused."""
    ev = events.make_event("step", step=3, loss=None, tokens_per_s=12.5)
    assert list(ev) == ["event", "time", "step", "loss", "tokens_per_s"]
    assert ev["event"] == "step" and ev["loss"] is None
    typed = events.Event.from_dict({**ev, "future_field": 1})
    assert isinstance(typed, events.StepEvent) and typed.step == 3 and typed.extra == {"future_field": 1}
    assert typed.to_dict() == {**ev, "future_field": 1}
    with pytest.raises(TypeError):
        events.make_event("step", stepp=3)
    with pytest.raises(ValueError, match="unknown event type"):
        events.Event.from_dict({"event": "exploded"})


def test_the_documented_event_contract_is_generated_from_the_events():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    begin, end = "<!-- events:begin -->", "<!-- events:end -->"
    assert begin in doc and end in doc
    committed = doc[doc.index(begin) + len(begin):doc.index(end)].strip()
    assert committed == events.contract_markdown().strip(), (
        "docs/architecture.md's event table is stale: run `python scripts/update_architecture_doc.py`")


def test_the_readme_points_inside_the_repository():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "../" not in text
    assert "docs/architecture.md" in text
