"""The package's shape: regular packages only, no import cycles, small modules, and the layers of pyproject.toml.

Imports are read from the source (`ast`), those inside functions included: a lazy import still ties two modules
together. Only imports under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import videomae_cli

PACKAGE = Path(videomae_cli.__file__).parent


def module_files() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imported_names(file: Path) -> set[str]:
    """Every absolute module (or module.attribute) name `file` imports, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(file.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (a name that is an attribute counts for its module)."""
    modules = module_files()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, file in modules.items():
        targets = {owner(name) for name in imported_names(file)} - {None, module}
        graph[module] = {t for t in targets if t is not None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_lazy_import_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_folder_of_the_package_is_a_regular_package() -> None:
    folders = {file.parent for file in PACKAGE.rglob("*.py")}
    assert [f for f in folders if not (f / "__init__.py").is_file()] == []


MAX_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    sizes = {name: len(file.read_text().splitlines()) for name, file in module_files().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_specs_and_their_resolution_load_without_torch() -> None:
    # Every command checks its flags before the seconds-long torch import; the import contracts say the same statically.
    heavy = "('torch', 'rich', 'numpy')"
    code = f"import sys, videomae_cli.config.resolve; print([m for m in sys.modules if m.split('.')[0] in {heavy}])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_import_contracts_hold() -> None:
    # pyproject.toml's [tool.importlinter] contracts: the layers, config free of heavy imports, display only on top.
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stdout[-3000:]
