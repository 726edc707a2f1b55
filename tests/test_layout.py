"""The tree shows the architecture: one-way layers, no import cycle, short files, rooms with a door sign.

Imports are read from the source (every ``import`` and ``from … import``, module-level
or inside a function, since a lazy import is still a dependency), resolved to our own
modules, and checked as a graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "sim", "dnn", "validation")
#: The most modules a package may hold directly (besides __init__.py) before it needs rooms.
MAX_TOP_MODULES = 6
#: A file longer than this cannot be read in one sitting.
MAX_LINES = 700


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources():
    return {(_module_name(p)): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


SOURCES = _sources()


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that ``name`` imports, anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import sub" imports the submodule pkg.sub when it is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in SOURCES else mod for a in node.names]
        else:
            continue
        for t in targets:
            # "import dnn.exact.hessian as de" depends on that module; keep the longest
            # prefix that is one of ours.
            parts = t.split(".")
            while parts and ".".join(parts) not in SOURCES:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


GRAPH = {name: _imports(name, path) for name, path in SOURCES.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    # A package's __init__ importing its own submodules is how a flat public
    # namespace works; a submodule importing its package back is what would close a
    # loop, and that is what this finds.
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("layer, may_import", [
    ("theory", {"theory"}),
    ("sim", {"sim", "theory"}),
    ("dnn", {"dnn", "theory"}),
])
def test_layers_import_only_downward(layer, may_import):
    bad = {(m, t) for m, ts in GRAPH.items() if m.split(".")[0] == layer
           for t in ts if t.split(".")[0] not in may_import}
    assert not bad


def test_the_two_rooms_of_dnn_do_not_import_each_other():
    def room(m):
        parts = m.split(".")
        return parts[1] if len(parts) > 2 and parts[1] in ("convnet", "exact") else None

    bad = {(m, t) for m, ts in GRAPH.items() for t in ts
           if room(m) and room(t) and room(m) != room(t)}
    assert not bad


@pytest.mark.parametrize("package", ["dnn", "validation"])
def test_few_modules_directly_inside(package):
    modules = [p for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= MAX_TOP_MODULES, sorted(p.name for p in modules)


def test_every_package_says_what_lives_there():
    for name, path in SOURCES.items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc.split()) >= 8, f"{name} has no __init__ docstring"


def test_no_file_too_long_to_read_in_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_the_cycle_finder_finds_a_cycle():
    # The checks above pass vacuously if _cycles cannot see one.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
