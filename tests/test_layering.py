"""The engine's rules of direction, read from every import statement in `workflows/`.

Imports are read statically, at module level and inside functions alike; imports inside
`if TYPE_CHECKING:` blocks are for type checkers only and do not count. The step-kind
registry loads kinds with importlib, which is no import statement, so it is exempt.
See docs/architecture.md for why each rule exists.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workflows"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts
    }


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules `module` imports: `from a import b` names a.b when that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            found.add(candidate if candidate in known else base)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the workflows modules loading it runs, as Python runs them: importing a.b.c
    also runs the `__init__` of every package on the way that is not already loading (an
    ancestor of the importer)."""
    modules = sources()
    known = set(modules)
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets: set[str] = set()
        for imported in imports_of(module, path, known):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in known and (prefix == imported or prefix not in ancestors):
                    targets.add(prefix)
        edges[module] = targets - {module}
    return edges


def all_imports() -> dict[str, set[str]]:
    modules = sources()
    return {m: imports_of(m, p, set(modules)) for m, p in modules.items()}


def offenders(where: str, forbidden: tuple[str, ...]) -> list[str]:
    def inside(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return sorted(
        f"{module} imports {target}"
        for module, targets in all_imports().items()
        if inside(module, where)
        for target in targets
        if any(inside(target, f) for f in forbidden)
    )


def test_the_engine_never_imports_the_project_or_its_faces() -> None:
    assert offenders("workflows", ("hitl",)) == []


def test_ai_code_reads_no_orm() -> None:
    assert offenders("workflows.ai", ("workflows.models", "django.db")) == []


def test_step_kinds_reach_the_services_only_through_their_hooks() -> None:
    assert offenders("workflows.steps", ("workflows.services",)) == []


PURE = [
    "workflows.engine",
    "workflows.definitions",
    "workflows.splits",
    "workflows.datasets",
    "workflows.agreement",
    "workflows.learning",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_never_import_the_orm(module: str) -> None:
    assert offenders(module, ("workflows.models", "django.db", "django.contrib")) == []


def test_there_is_no_import_cycle_inside_workflows() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checker_sees_function_level_imports_and_skips_type_checking_blocks(
    tmp_path: Path,
) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from workflows.models import Run\n"
        "def f():\n    from workflows.services import steps\n"
    )
    found = imports_of("probe", source, {"workflows.services.steps"})
    assert "workflows.services.steps" in found
    assert "workflows.models" not in found


def test_no_module_in_workflows_is_too_long_to_read_in_one_sitting() -> None:
    long = {
        module: n
        for module, path in sources().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
