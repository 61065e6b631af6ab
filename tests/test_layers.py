"""The layer rule, read off the source: no module of the package imports a module of a higher layer, whether at the
top, inside a function (a lazy import is still an import), under ``TYPE_CHECKING`` or by ``importlib.import_module``
of a constant name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_nas"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "arguments", "files", "module_state", "run_folder", "checkpoint_io", "plots"),  # what every layer uses
    ("data", "plugins"),  # data modules, beside the layers; plug-ins a user names by import path
    ("ops",),
    ("genotypes",),
    ("spaces", "cells"),  # each family's cells, networks, supernet and space; cells.py re-exports the families' cells
    ("networks",),  # every family's final network under one path, registered with timm
    ("callbacks",),
    ("strategies",),
    ("recipes",),
    ("benchmark", "quality", "speed"),  # programs over the strategies and recipes
)
"""The package's top-level modules and subpackages, lowest layer first; a module may import its own layer and those
below it. The package's ``__init__`` re-exports and sits above them all."""

LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}
ROOT = len(LAYERS)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``lightning_nas.spaces.nb201.cell`` for ``lightning_nas/spaces/nb201/cell.py`` (a package: its
    ``__init__``)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of a module of the package: that of its top-level module or subpackage; the package itself: above
    all."""
    parts = module.split(".")
    return ROOT if len(parts) == 1 else LAYER[parts[1]]


def imported_modules(source: str, module: str, is_package: bool, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module of the package) of every import in ``source``, the module ``module``: every ``import`` and
    ``from ... import`` anywhere in the tree (relative ones resolved), and ``importlib.import_module("...")``."""
    found: list[tuple[int, str]] = []
    own_package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own_package.split(".")[: len(own_package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # ``from lightning_nas import spaces`` imports the module lightning_nas.spaces
                candidate = f"{base}.{alias.name}"
                submodule = package.parent.joinpath(*candidate.split("."))
                is_module = submodule.is_dir() or submodule.with_suffix(".py").is_file()
                found.append((node.lineno, candidate if is_module else base))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return [(line, name) for line, name in found if name.split(".")[0] == package.name]


def violations(package: Path = PACKAGE) -> list[str]:
    """``file:line: module (layer) imports module (higher layer)`` for every import against the layer rule."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        for line, imported in imported_modules(path.read_text(), module, path.name == "__init__.py", package):
            if layer_of(imported) > layer_of(module):
                found.append(f"{path.relative_to(package.parent)}:{line}: {module} imports {imported}, a higher layer")
    return found


def test_every_module_of_the_package_has_a_layer() -> None:
    tops = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
            if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()}
    assert tops - set(LAYER) == set(), "place each new top-level module or subpackage in LAYERS"
    assert set(LAYER) - tops == set(), "LAYERS names a module the package no longer has"


def test_no_module_imports_a_higher_layer() -> None:
    assert violations() == []


def test_the_check_sees_lazy_relative_and_dynamic_imports(tmp_path: Path) -> None:
    """A lower layer reaching up at the top, inside a function, relatively or through importlib is caught; the same
    layer, lower layers, other packages and a name imported from a module are not."""
    package = tmp_path / "lightning_nas"
    for folder in ("ops", "spaces", "networks", "recipes"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from lightning_nas.recipes import main\n")
    (package / "networks" / "timm.py").write_text("from lightning_nas.spaces import SPACES\nimport torch\n")
    (package / "spaces" / "family.py").write_text(
        "import importlib\n"
        "from lightning_nas.ops import create_op\n"
        "from . import base\n"
        "def build():\n"
        "    from lightning_nas.networks.timm import Network\n"
        "    from .. import recipes\n"
        "    return importlib.import_module('lightning_nas.networks')\n")
    assert violations(package) == [
        "lightning_nas/spaces/family.py:5: lightning_nas.spaces.family imports lightning_nas.networks.timm, a higher "
        "layer",
        "lightning_nas/spaces/family.py:6: lightning_nas.spaces.family imports lightning_nas.recipes, a higher layer",
        "lightning_nas/spaces/family.py:7: lightning_nas.spaces.family imports lightning_nas.networks, a higher layer",
    ]
