"""The tree tells the architecture: few top-level modules, small modules, no import cycle.

Read from the source with ``ast`` (nothing is imported), so a cycle that
only shows under one import order is still found. An import inside
``if TYPE_CHECKING:`` is not followed: it never runs, and ``app/services.py``
names every service's type that way so any module may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
MAX_TOP_LEVEL_MODULES = 12
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(APP.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The app modules this one imports when it is imported (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit([child] if isinstance(child, ast.stmt) else child.body)

    visit(tree.body)
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in APP.rglob("*.py")}
    modules = set(paths)
    return {name: runtime_imports(path, modules) - {name} for name, path in paths.items()}


def test_no_import_cycle() -> None:
    edges = graph()
    # Packages import nothing but their own docstring here, so a package -> submodule
    # edge can only come from ``from app.x import y``; follow modules, not packages.
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)


def test_few_modules_at_the_top_of_app() -> None:
    top = sorted(p.name for p in APP.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_modules_stay_small() -> None:
    big = {module_name(p): n for p in APP.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these (over {MAX_LINES} lines): {big}"


def test_every_package_says_what_it_holds() -> None:
    for init in APP.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(APP.parent)} needs a docstring saying what the package holds"


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from app.b import x\n")
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.a import y\nfrom app.a import z\n")
    modules = {"app.a", "app.b"}
    assert runtime_imports(a, modules) == {"app.b"}
    assert runtime_imports(b, modules) == {"app.a"}
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.a import y\n")
    assert runtime_imports(b, modules) == set()
