"""The package's map: which package may import which, no import cycles, short files.

The rules are the "map of the package" in BUILD_NOTES.md. Imports are read from the source
(runtime imports only: those under `if TYPE_CHECKING:` are type hints), so the test needs no
backend and runs in one leg.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

pytestmark = pytest.mark.backend_independent

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_hbehavemae"

#: Each top-level part of the package → the parts it may import (besides itself).
ALLOWED = {
    "errors": set(),
    "version": set(),
    "_tensorflow_devices": set(),
    "allocator": set(),
    "files": {"errors"},
    "presets": {"files", "errors", "version"},
    "models": {"presets", "errors"},
    "convert": {"models", "files", "errors"},
    "loading": {"models", "presets", "convert", "errors"},
    "data": {"files", "errors"},
    "training": {"models", "data", "presets", "loading", "files", "errors", "version",
                 "allocator"},
    "embeddings": {"models", "data", "files", "loading", "errors"},
    "evaluation": {"data", "files", "errors"},
    "serving": {"models", "presets", "loading", "files", "errors"},
    "report": {"models", "presets", "errors"},
    "cli": {"models", "presets", "loading", "data", "training", "embeddings", "evaluation",
            "serving", "report", "files", "errors", "convert", "version", "allocator"},
    "__init__": {"_tensorflow_devices", "loading", "models", "presets", "version"},
}

#: Longest module allowed, in lines (a file should be readable in one sitting).
MAX_LINES = 420


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """Modules of this package imported at run time (not under `if TYPE_CHECKING:`).

    `from package import submodule` depends on the submodule; a package that contains the
    importing module is already being imported, so it is no dependency.
    """
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = {f"{base}.{alias.name}" for alias in node.names}
            submodules = names & modules
            found.update(submodules)
            if submodules != names:
                found.add(base)
    own = _module_name(path)
    return {name for name in found if name.startswith("keras_hbehavemae")
            and not own.startswith(name + ".")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = {target for target in _runtime_imports(path, set(modules))
                   if target in modules}
        graph[name] = targets - {name}
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_package_imports_only_what_the_map_allows():
    violations = []
    for module, targets in _graph().items():
        part = _part(module)
        assert part in ALLOWED, f"{module}: a new part of the package; add it to the map"
        for target in targets:
            other = _part(target)
            if other not in (part, "__init__") and other not in ALLOWED[part]:
                violations.append(f"{module} imports {target}")
    assert not violations, "\n".join(sorted(violations))


def test_there_is_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_is_too_long_to_read_in_one_sitting():
    long = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
            for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in long.items() if lines > MAX_LINES} == {}


def test_the_rules_see_real_imports():
    graph = _graph()
    assert "keras_hbehavemae.models.geometry" in graph["keras_hbehavemae.models.config"]
    # geometry names the config only as a type hint, so there is no cycle between them
    assert "keras_hbehavemae.models.config" not in graph["keras_hbehavemae.models.geometry"]
