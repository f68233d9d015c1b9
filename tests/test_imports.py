"""The package's import graph: no cycles, and the science never reaches up into stages or tooling.

Every import counts, also one inside a function (a cycle deferred to call time is still a cycle:
the two modules cannot be understood or changed apart).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT, write_tree

PACKAGES = ("maskprivacy", "maskprivacy_workflow")
# folders that compute: they may import each other (no cycles), never the stage entries or tooling
SCIENCE = ("core", "datasets", "faces", "masks", "model", "analysis", "report")


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from pkg import name`` resolved to the
    module ``pkg.name`` when there is one, else to ``pkg``)."""
    files = {module_name(p, src): p for pkg in PACKAGES for p in (src / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                found = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                ]
            else:
                continue
            targets |= {m for m in found if m in files and m != name}
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, stable order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph(ROOT / "src"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_science_does_not_import_stages_or_workflow_tooling():
    graph = import_graph(ROOT / "src")
    science = [m for m in graph if m.split(".")[:2][-1] in SCIENCE and m.startswith("maskprivacy.")]
    assert {"maskprivacy.core.io", "maskprivacy.faces.detect"} <= set(science)
    bad = {
        f"{m} imports {t}"
        for m in science
        for t in graph[m]
        if t.startswith(("maskprivacy.stages", "maskprivacy_workflow"))
    }
    assert not bad, sorted(bad)


def test_a_cycle_is_found_and_shown(tmp_path):
    """Also through a relative import inside a function, and a package's __init__."""
    pkg = tmp_path / "maskprivacy"
    write_tree(
        pkg,
        {
            "__init__.py": "",
            "a/__init__.py": "from .one import x\n",
            "a/one.py": "from maskprivacy.b import two\nx = 1\n",
            "b/__init__.py": "",
            "b/two.py": "def f():\n    from ..a import one\n",
            "c.py": "import maskprivacy.b.two\n",
        },
    )
    (tmp_path / "maskprivacy_workflow").mkdir()
    graph = import_graph(tmp_path)
    assert graph["maskprivacy.c"] == {"maskprivacy.b.two"}
    assert find_cycle(graph) == ["maskprivacy.a.one", "maskprivacy.b.two", "maskprivacy.a.one"]
    (pkg / "b/two.py").write_text("y = 2\n")
    assert find_cycle(import_graph(tmp_path)) is None


# the layers under report/: they return data, report/ draws and writes HTML from it
BELOW_REPORT = ("core", "datasets", "faces", "masks", "model", "analysis")


def test_no_layer_below_report_imports_report():
    graph = import_graph(ROOT / "src")
    upward = {
        m: sorted(t for t in targets if t.startswith("maskprivacy.report"))
        for m, targets in graph.items()
        if m.split(".")[:2][-1] in BELOW_REPORT and m.startswith("maskprivacy.")
    }
    assert not {m: t for m, t in upward.items() if t}, upward
