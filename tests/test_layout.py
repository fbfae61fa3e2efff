"""The package's shape: no circle of imports, and the plain packages free of Home Assistant.

Read from the source with `ast`, so imports under `if TYPE_CHECKING:` (or inside a function)
count as much as the rest: a circle hidden there is still two modules that cannot be understood
one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "custom_components" / "shelly_energy"
PACKAGE_NAME = "custom_components.shelly_energy"
PURE_PACKAGES = ("meter", "energy", "export", "virtual_meter")


def module_name(path: Path) -> str:
    """Return a source file's module name within the package ("" for the package itself)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def own_module(name: str) -> str | None:
    """Return the module within the package that an absolute name is (None: not the package's)."""
    if name == PACKAGE_NAME:
        return ""
    if name.startswith(f"{PACKAGE_NAME}."):
        return name.removeprefix(f"{PACKAGE_NAME}.")
    return None


def imported_names(source: str, package: str) -> Iterator[tuple[str, int]]:
    """Yield the absolute name of every module a source imports from, with its line.

    `package` is the package the source is in, within ours ("" for ours itself).
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = [PACKAGE_NAME, *package.split(".")] if package else [PACKAGE_NAME]
                parts = parts[: len(parts) - (node.level - 1)]
                origin = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                # `from .energy import site` imports the module energy.site, not the package.
                submodule = f"{origin}.{alias.name}"
                yield (submodule if own_module(submodule) in MODULES else origin), node.lineno


def imports_of(module: str) -> list[tuple[str, int]]:
    """Return the names a module of the package imports from, with their lines."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return list(imported_names(path.read_text(), package))


def intra_package_imports(module: str) -> set[str]:
    """Return the package's modules that the module imports."""
    return {
        target
        for name, _ in imports_of(module)
        if (target := own_module(name)) in MODULES and target != module
    }


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return the modules of one cycle in the graph, the first repeated at the end, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(graph[module]):
            if cycle := visit(target):
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module):
            return cycle
    return None


def test_no_module_imports_one_that_imports_it_back() -> None:
    """No circle of imports within the package, counting those made for type checking only."""
    graph = {module: intra_package_imports(module) for module in MODULES}
    assert {"coordinator", "history_import", "runtime"} <= graph[""]  # the graph is read at all
    cycle = import_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_are_read_wherever_they_are() -> None:
    """Relative, absolute, submodule and type-checking-only imports all count."""
    source = """
from typing import TYPE_CHECKING
from homeassistant.core import HomeAssistant
from . import values
from .client import MeterClient
from ..coordinator import MeterCoordinator

if TYPE_CHECKING:
    from ..energy.site import Role
    import custom_components.shelly_energy.history_import
"""
    assert list(imported_names(source, "meter")) == [
        ("typing", 2),
        ("homeassistant.core", 3),
        (f"{PACKAGE_NAME}.meter.values", 4),
        (f"{PACKAGE_NAME}.meter.client", 5),
        (f"{PACKAGE_NAME}.coordinator", 6),
        (f"{PACKAGE_NAME}.energy.site", 9),
        (f"{PACKAGE_NAME}.history_import", 10),
    ]


def test_import_cycle_is_found() -> None:
    """A circle through several modules is found, and only a circle."""
    assert import_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": {"b"}}) == ["b", "b"]


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_plain_package_knows_no_home_assistant(package: str) -> None:
    """The domain logic imports neither Home Assistant nor the integration's adapters."""
    modules = [module for module in MODULES if module.startswith(f"{package}.")]
    assert modules
    offending = [
        f"{MODULES[module].relative_to(PACKAGE)}:{line} imports {name}"
        for module in [package, *modules]
        for name, line in imports_of(module)
        if name.split(".")[0] == "homeassistant"
        or ((own := own_module(name)) is not None and own.split(".")[0] not in PURE_PACKAGES)
    ]
    assert offending == []
