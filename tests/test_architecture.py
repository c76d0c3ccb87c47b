"""The layout docs/architecture.md promises: workers never import the supervisor, the fake
gateway imports only the workers' shared vocabulary, and no module imports itself in a circle
at import time."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shardmgr", "workers", "fakegateway")
# What the fake may share with the worker: wire vocabulary, the clock, log format, redaction.
FAKE_MAY_IMPORT = {
    "workers",
    "workers.protocol",
    "workers.clock",
    "workers.logsetup",
    "workers.redact",
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _import_time_deps(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules imported when ``path`` is imported: not under TYPE_CHECKING, not inside
    functions (those run later, after every module is loaded)."""
    deps: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.Import):
                deps.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                subs = {f"{child.module}.{a.name}" for a in child.names} & modules.keys()
                deps.update(subs or {child.module})
            visit(child)

    visit(ast.parse(path.read_text()))
    return deps & modules.keys()


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {d for d in _import_time_deps(path, modules) if not name.startswith(d + ".")} - {name}
        for name, path in modules.items()
    }


def test_workers_never_import_the_supervisor() -> None:
    upward = {(m, d) for m, ds in _graph().items() if m.startswith("workers") for d in ds}
    assert {(m, d) for m, d in upward if d.startswith("shardmgr")} == set()


def test_the_fake_gateway_imports_only_the_shared_vocabulary() -> None:
    graph = _graph()
    outside = {
        (m, d)
        for m, ds in graph.items()
        if m.startswith("fakegateway")
        for d in ds
        if not d.startswith("fakegateway") and d not in FAKE_MAY_IMPORT
    }
    assert outside == set()


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                walk(dep, [*path, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []
