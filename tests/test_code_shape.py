"""The shape of ``zeroshot``'s code, read from the source with :mod:`ast`.

- The import graph has no cycle between modules, and no lower layer imports a higher one (:data:`LAYERS`, lowest
  first). Imports inside functions count: a lazy import is still a dependency.
- No function is longer than :data:`MAX_FUNCTION_LINES` lines of code (its docstring not counted) unless its
  docstring says why ("Long because ...").
"""

from __future__ import annotations

import ast
from pathlib import Path

import zeroshot

PACKAGE = Path(zeroshot.__file__).parent

#: Top-level modules and packages of ``zeroshot``, lowest layer first.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "atomic", "bundled", "csv_text", "distance_ties", "stats"),
    ("structure",),
    ("volume",),
    ("datasets", "phantom", "montage"),
    ("prompts", "metrics", "checkpoints", "store"),
    ("scoring", "segmenters", "supervised"),
    ("interactive",),
    ("runner",),
    ("compare",),
    ("figures",),
    ("report",),
    ("demo",),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``zeroshot`` modules it imports (``from pkg import sub`` depends on ``pkg.sub`` only)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                submodules = {f"{module}.{a.name}" for a in node.names} & paths.keys()
                targets.update(submodules)
                if len(submodules) < len(node.names):  # names defined in the module itself, not only submodules
                    targets.add(module)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_top_level_module_has_a_layer() -> None:
    unplaced = sorted({layer(m) for m in import_graph()} - set(RANK))
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_no_lower_layer_imports_a_higher_one() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if RANK[layer(target)] > RANK[layer(module)]
    )
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "zeroshot.volume" in graph["zeroshot.datasets"], "datasets imports volume inside functions only"
    assert any(t.startswith("zeroshot.runner") for t in graph["zeroshot.compare.runs"]), "compare reads the runner's"


def code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the last statement, less the docstring's."""
    lines = function.end_lineno - function.lineno + 1
    if ast.get_docstring(function) is not None:
        docstring = function.body[0]
        lines -= docstring.end_lineno - docstring.lineno + 1
    return lines


def test_no_function_is_long_without_saying_why() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and code_lines(node) > MAX_FUNCTION_LINES:
                if "long because" not in (ast.get_docstring(node) or "").lower():
                    long.append(f"{module_name(path)}.{node.name}: {code_lines(node)} lines")
    assert not long, "split these, or say in the docstring why they are long:\n" + "\n".join(long)


def test_code_lines_leave_the_docstring_out() -> None:
    (function,) = ast.parse('def f():\n    """Doc.\n\n    More.\n    """\n    return 1\n').body
    assert code_lines(function) == 2


def test_no_test_module_imports_another():
    """Shared test helpers live in ``tests/fixtures_*.py``, not in a test module another one imports (which ties
    one module's tests to another's internals, and would collect an imported ``test_*`` function twice)."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert offenders == []
