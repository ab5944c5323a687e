"""The device runtime's layers as the README draws them: each stage imports only the stages before it.

Read from the source with ``ast`` (nothing is imported), so an import inside a function or under
``TYPE_CHECKING`` counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "edge"

SHARED = ("edge", "edge.contract", "edge.errors", "edge.config", "edge.shipped")  # imported by every stage
STAGES = ("edge.capture", "edge.vision", "edge.monitor", "edge.delivery")  # in data-path order
TOP = ("edge.daemon", "edge.preflight", "edge.cli", "edge.bench", "edge.replay", "edge.golden")
# The config schema embeds the alert rules' schema and the profiles' defaults; profiles imports nothing from edge.
SHARED_MAY_IMPORT = {"edge.monitor.profiles"}
NEVER = {"tensorflow", "keras", "tf_keras", "jax", "train", "convert"}  # the workstation side


def edge_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(EDGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = edge_modules()


def imported(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in the file; ``from edge.x import y`` names edge.x.y if y is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


GRAPH = {name: {m for m in imported(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer(module: str) -> int | None:
    if module in SHARED:
        return 0
    for rank, stage in enumerate(STAGES, start=1):
        if module == stage or module.startswith(stage + "."):
            return rank
    return len(STAGES) + 1 if module in TOP else None


def test_every_edge_module_has_a_layer():
    assert [m for m in MODULES if layer(m) is None] == [], "place each new edge module in a stage (or list it here)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_later_layer(module):
    bad = sorted(t for t in GRAPH[module] if layer(t) > layer(module)
                 and not (layer(module) == 0 and t in SHARED_MAY_IMPORT))
    assert bad == [], f"{module} (layer {layer(module)}) imports later layers: {bad}"


def test_the_shared_exception_pulls_in_nothing():
    for module in SHARED_MAY_IMPORT:
        assert GRAPH[module] <= set(SHARED) - {"edge.config"}, f"{module} must stay a leaf: {GRAPH[module]}"


def test_stage_packages_are_only_docstrings():
    """Importing edge.monitor.profiles (as the config does) must not run the monitor stage's imports."""
    for stage in STAGES:
        tree = ast.parse(MODULES[stage].read_text())
        assert ast.get_docstring(tree), f"{stage} needs a docstring: what it owns and what it may import"
        assert "may import" in ast.get_docstring(tree).lower()
        assert len(tree.body) == 1, f"{stage}/__init__.py should hold its docstring only"


def test_no_import_circles():
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state and (circle := visit(target, [*path, module])):
                return circle
        state[module] = 2
        return None

    for module in sorted(MODULES):
        if module not in state:
            assert (circle := visit(module, [])) is None, " -> ".join(circle)


def test_edge_never_imports_the_workstation_side():
    bad = {name: sorted(m for m in imported(name, path) if m.split(".")[0] in NEVER)
           for name, path in MODULES.items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_every_edge_package_and_its_data_ship():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools["packages"]
    on_disk = [m for m, p in MODULES.items() if p.name == "__init__.py"]
    if isinstance(packages, dict):
        find = packages["find"]
        shipped = [m for m in on_disk if any(fnmatch.fnmatchcase(m, pat) for pat in find.get("include", ["*"]))
                   and not any(fnmatch.fnmatchcase(m, pat) for pat in find.get("exclude", []))]
    else:
        shipped = [m for m in on_disk if m in packages]
    assert shipped == on_disk
    data = setuptools["package-data"]["edge"]
    for folder in ("static", "samples"):
        files = [p for p in (EDGE / folder).iterdir() if p.is_file()]
        assert files and all(any(fnmatch.fnmatchcase(f"{folder}/{p.name}", pat) for pat in data) for p in files)


def test_train_has_no_import_circles():
    """The workstation side too: train.fit and train.average share the run directory's layout through
    train.rundir instead of importing each other."""
    train = {f"train.{p.stem}": p for p in sorted((ROOT / "train").glob("*.py")) if p.stem != "__init__"}
    graph = {name: {m for m in imported(name, path) if m in train and m != name} for name, path in train.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(t == goal or (t not in seen and reaches(t, goal, seen | {t})) for t in graph[start])

    circles = sorted(name for name in train if reaches(name, name, set()))
    assert circles == [], f"modules on an import circle: {circles}"
