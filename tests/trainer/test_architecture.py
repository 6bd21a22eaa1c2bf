"""ARCHITECTURE.md stays the map of the tree: every module is named in it, and imports form no circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_is_named_in_architecture_md():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    modules = [p for package in ("metaaligner_chain", "trainer") for p in (ROOT / package).rglob("*.py")
               if p.name != "__init__.py"]
    assert modules
    unnamed = [str(p.relative_to(ROOT)) for p in modules if f"`{p.name}`" not in text]
    assert not unnamed, f"name these in ARCHITECTURE.md, in the room of the step they belong to: {unnamed}"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: at module level, in `try` and `if` blocks,
    except under `if TYPE_CHECKING:`; not those inside functions, which run later."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]


def _import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports when it is imported (`from P import m` counts as
    importing `P.m` when `m` is a module, else `P`)."""
    paths = {_module_name(p): p for package in ("metaaligner_chain", "trainer")
             for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in paths)
                continue
            base = node.module or ""
            if node.level:  # relative: from the module's package, `level - 1` packages up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in paths else base)
        edges &= set(paths)
        edges.discard(name)
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in `graph` (its modules in order, the first repeated last), if any."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_circles():
    """No module of the package or the trainer imports, at import time, one that imports it back
    (a circle works only in one import order and breaks on the next reordering)."""
    graph = _import_graph()
    assert "metaaligner_chain.gate" in graph["metaaligner_chain.runnable"]  # the check sees edges
    circle = _circle(graph)
    assert circle is None, f"import circle: {' -> '.join(circle)}; move the shared piece into a module both import"


def test_the_circle_check_finds_a_circle():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None


def _all_imports(path: Path) -> Iterator[str]:
    """Every module `path` names in an import, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_imports_point_one_way():
    """`trainer` may import `metaaligner_chain`, never the reverse; `trainer.data` and
    `trainer.train` import neither `trainer.export` nor `trainer.evaluate`."""
    forbidden = {"metaaligner_chain": ("trainer",),
                 "trainer/data": ("trainer.export", "trainer.evaluate"),
                 "trainer/train": ("trainer.export", "trainer.evaluate")}
    wrong = [f"{path.relative_to(ROOT)} imports {name}"
             for folder, targets in forbidden.items() for path in (ROOT / folder).rglob("*.py")
             for name in _all_imports(path) if name.split(".")[0] in ("trainer", "metaaligner_chain")
             and any(name == t or name.startswith(t + ".") for t in targets)]
    assert not wrong, wrong
