"""The package's layering, read from the import graph of the source files (not from memory).

Layers, from the bottom: common < config < data < model < train < results < search < cli, bench.
Within search: faults < space < execution < records < driver. A module may import its own
package and any package below it; there is no import circle at any level (modules, packages);
and the core (common, config, data, model, train) imports neither Ray nor MLflow.

Every import counts, also one inside a function: a deferred import still ties the layers.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "metaxl_tune"

LAYERS = ("common", "config", "data", "model", "train", "results", "search", "cli")
"""Top-level packages of metaxl_tune, from the bottom up (cli is the folder mapped to metaxl_tune.cli)."""
SEARCH_LAYERS = ("faults", "space", "execution", "records", "driver")
"""Subpackages of search, from the bottom up."""
CORE = ("common", "config", "data", "model", "train")
FORBIDDEN_IN_CORE = ("ray", "mlflow")


@dataclass(frozen=True)
class Module:
    name: str
    """Dotted name, e.g. metaxl_tune.train.trainer (a package is named without __init__)."""
    path: Path
    is_package: bool


def source_modules(package_root: Path, mapped: dict[str, Path] | None = None) -> list[Module]:
    """Every module under ``package_root`` (the folder of metaxl_tune), plus folders mapped into
    the package (pyproject's package-dir: cli/ is metaxl_tune.cli)."""
    roots = {PACKAGE: package_root, **{f"{PACKAGE}.{k}": v for k, v in (mapped or {}).items()}}
    modules = []
    for prefix, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules.append(Module(".".join([prefix, *parts]), path, is_package))
    return modules


def imports_of(module: Module) -> set[str]:
    """Absolute names this module imports, its relative imports resolved; ``from a import b``
    yields both a and a.b (b may be a submodule)."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def layer_of(name: str) -> tuple[int, ...] | None:
    """A module's place: (top-level layer,) or, inside search, (search's layer, sub-layer).
    None for the package root itself (metaxl_tune/__init__.py, imported by any layer)."""
    parts = name.split(".")[1:]
    if not parts:
        return None
    if parts[0] not in LAYERS:
        raise AssertionError(f"{name}: not in a layer; put it in one of {', '.join(LAYERS)}")
    top = LAYERS.index(parts[0])
    if parts[0] == "search" and len(parts) > 1:
        if parts[1] not in SEARCH_LAYERS:
            raise AssertionError(f"{name}: not in a layer of search; put it in one of {', '.join(SEARCH_LAYERS)}")
        return (top, SEARCH_LAYERS.index(parts[1]))
    return (top,)


def may_import(importer: tuple[int, ...], imported: tuple[int, ...]) -> bool:
    """Own layer or below; search's __init__ (layer (search,)) sits below its subpackages."""
    if importer[0] != imported[0]:
        return imported[0] < importer[0]
    return imported[1:] <= importer[1:] if len(imported) > 1 else True


def import_graph(modules: list[Module]) -> dict[str, set[str]]:
    known = {module.name for module in modules}
    return {m.name: {name for name in imports_of(m) if name in known and name != m.name} for m in modules}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for importer, imported_names in graph.items():
        low = layer_of(importer)
        for imported in imported_names:
            high = layer_of(imported)
            if low is not None and high is not None and not may_import(low, high):
                found.append(f"{importer} imports {imported}, a higher layer")
    return sorted(found)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between packages: each module counts for the package that holds it (a
    package's __init__ counts for the package itself)."""
    def holder(name: str) -> str:
        return name.rpartition(".")[0] if name not in packages else name

    packages = {name for name in graph if any(other.startswith(name + ".") for other in graph)}
    edges: dict[str, set[str]] = {}
    for importer, imported_names in graph.items():
        source = holder(importer)
        for imported in imported_names:
            target = holder(imported)
            if target != source and not source.startswith(target + ".") and not target.startswith(source + "."):
                edges.setdefault(source, set()).add(target)
    return edges


def core_imports_of_forbidden(modules: list[Module]) -> list[str]:
    found = []
    for module in modules:
        layer = module.name.split(".")[1:2]
        if not layer or layer[0] not in CORE:
            continue
        for name in imports_of(module):
            if name.split(".")[0] in FORBIDDEN_IN_CORE:
                found.append(f"{module.name} imports {name.split('.')[0]} (the core runs without Ray and MLflow)")
    return sorted(set(found))


def problems(package_root: Path, mapped: dict[str, Path] | None = None) -> list[str]:
    modules = source_modules(package_root, mapped)
    graph = import_graph(modules)
    found = upward_imports(graph)
    found += [f"import circle: {' <-> '.join(c)}" for c in circles(graph)]
    found += [f"package import circle: {' <-> '.join(c)}" for c in circles(package_graph(graph))]
    found += core_imports_of_forbidden(modules)
    return found


def test_the_package_is_layered_without_circles():
    assert problems(REPO / PACKAGE, {"cli": REPO / "cli"}) == []


def test_every_package_says_what_it_holds_and_may_import():
    for init in sorted((REPO / PACKAGE).rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(REPO)}: no docstring saying what the package holds"
        if init.parent != REPO / PACKAGE:
            assert "import" in doc, f"{init.relative_to(REPO)}: the docstring does not say what it may import"


# --- The checker itself, on a synthetic module tree --------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    package = root / PACKAGE
    for relative, text in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


LAYERED = {
    "common/__init__.py": "",
    "common/names.py": "",
    "config/__init__.py": "from metaxl_tune.common import names\n",
    "train/__init__.py": "",
    "train/trainer.py": "from metaxl_tune.config import x\nfrom . import metrics\n",
    "train/metrics.py": "import torch\n",
    "search/__init__.py": "",
    "search/faults/__init__.py": "",
    "search/faults/interrupt.py": "import ray\n",
    "search/driver/__init__.py": "",
    "search/driver/runner.py": "from metaxl_tune.search.faults.interrupt import y\nfrom metaxl_tune.train import trainer\n",
}


def test_the_synthetic_layered_tree_passes(tmp_path):
    assert problems(write_tree(tmp_path, LAYERED)) == []


def test_an_upward_import_fails(tmp_path):
    tree = {**LAYERED, "common/names.py": "def f():\n    from metaxl_tune.train import metrics\n"}
    assert problems(write_tree(tmp_path, tree)) == [
        "metaxl_tune.common.names imports metaxl_tune.train, a higher layer",
        "metaxl_tune.common.names imports metaxl_tune.train.metrics, a higher layer",
    ]


def test_an_upward_import_between_search_subpackages_fails(tmp_path):
    tree = {**LAYERED, "search/faults/interrupt.py": "from metaxl_tune.search.driver.runner import z\n"}
    assert "metaxl_tune.search.faults.interrupt imports metaxl_tune.search.driver.runner, a higher layer" in problems(
        write_tree(tmp_path, tree))


def test_an_import_circle_within_a_layer_fails(tmp_path):
    tree = {**LAYERED, "train/metrics.py": "from metaxl_tune.train.trainer import run\n"}
    assert problems(write_tree(tmp_path, tree)) == [
        "import circle: metaxl_tune.train.metrics <-> metaxl_tune.train.trainer"]


def test_ray_or_mlflow_in_the_core_fails(tmp_path):
    tree = {**LAYERED, "common/names.py": "import mlflow.tracking\n", "train/metrics.py": "from ray import tune\n"}
    assert problems(write_tree(tmp_path, tree)) == [
        "metaxl_tune.common.names imports mlflow (the core runs without Ray and MLflow)",
        "metaxl_tune.train.metrics imports ray (the core runs without Ray and MLflow)",
    ]


def test_a_module_outside_every_layer_fails(tmp_path):
    with pytest.raises(AssertionError, match="metaxl_tune.helpers: not in a layer"):
        problems(write_tree(tmp_path, {**LAYERED, "helpers.py": ""}))
