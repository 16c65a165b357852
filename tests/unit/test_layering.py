"""The import graph, read from the AST (imports inside functions and TYPE_CHECKING blocks included): one direction
of dependencies and no cycles.

    warning.shared   the bottom: records, topic names, regions, settings, metrics; imports no project module above it
    indices          pure kernels: nothing of the project but indices
    ingest           indices, ingest, warning.shared
    alerts           alerts, warning.shared (the shared wire records; never grading, CAP or the web layer)
    warning          anything
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("warning", "indices", "ingest", "alerts")
ALLOWED = {
    "warning.shared": ("warning.shared",),
    "indices": ("indices",),
    "ingest": ("indices", "ingest", "warning.shared"),
    "alerts": ("alerts", "warning.shared"),
    "warning": PACKAGES,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports: ``from a.b import c`` is a.b.c when that is a module, else a.b."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m.split(".")[0] in PACKAGES and m in known}


def _layer(module: str) -> str:
    return "warning.shared" if module.startswith("warning.shared") else module.split(".")[0]


def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) - {name} for name, path in mods.items()}


def test_no_upward_edges() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                    if not any(b == ok or b.startswith(ok + ".") for ok in ALLOWED[_layer(a)]))
    assert upward == []


def test_no_import_cycles() -> None:
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                strongconnect(w)
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
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            strongconnect(v)
    assert cycles == []


def test_the_graph_is_read() -> None:
    """The checks above see real edges (a parser that found nothing would pass them)."""
    g = graph()
    assert "warning.shared.records" in g["alerts.routing"]
    assert "ingest.intake" in g["warning.app"]
    assert "warning.app" in g["warning.web.auth"]
    assert "warning.shared.regions" in g["ingest.qc"]  # an import inside a function
