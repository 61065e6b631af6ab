"""Plug-ins from the user's own modules: a search space, a black-box search method or a data module named by its
import path, ``package.module:Name``, wherever the package takes the name of a registered one (``--space
mypkg.spaces:ChainSpace``, ``--method mypkg.search:my_search``, ``--data mypkg.data:MyData``). The module must be
importable (installed, or its folder on ``PYTHONPATH``); nothing in the package is edited or registered."""

from __future__ import annotations

import importlib
from typing import Any

from lightning_nas.errors import ConfigError

FORM = "package.module:Name"
"""The form of an import path, as errors state it."""


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path (``package.module:Name``) rather than a registered name."""
    return ":" in name


def load(path: str, what: str) -> Any:
    """The object the import path ``path`` names, importing its module; ``what`` it should be (``"search space"``)
    names it in the one-line ConfigError of a malformed path, a module that cannot be found, or a missing name."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ConfigError(f"{what} {path!r}: expected an import path of the form {FORM}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if missing == module_name or module_name.startswith(f"{missing}."):  # the module itself, or its package
            raise ConfigError(f"{what} {path!r}: no module named {missing!r} (expected {FORM}, its folder on "
                              "PYTHONPATH or installed)") from None
        raise ConfigError(f"{what} {path!r}: module {module_name} imports {missing!r}, which is not "
                          "installed") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"{what} {path!r}: module {module_name} has no {attribute!r} (expected {FORM})")
        found = getattr(found, part)
    return found


def data_module_class(name: str) -> type:
    """The data module ``name`` names: a class of ``lightning_nas.data`` by its name (``FashionMNISTDataModule``),
    or a ``NASDataModule`` subclass of the user's own module by its import path; anything else is a one-line
    ConfigError."""
    import lightning_nas.data as data

    known = [name for name in data.__all__ if name.endswith("DataModule") and name != "NASDataModule"]
    cls = load(name, "data module") if is_import_path(name) else getattr(data, name, None)
    if not (isinstance(cls, type) and issubclass(cls, data.NASDataModule)):
        raise ConfigError(f"--data {name!r} is not a data module of lightning_nas.data ({', '.join(known)}) nor a "
                          f"NASDataModule subclass of your own module by its import path, {FORM}")
    return cls
