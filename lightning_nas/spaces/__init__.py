"""Search spaces, registered by name: DARTS cells, ENAS micro cells and macro networks, PNAS cells and NAS-Bench-201
cells. ``create_space("nb201")`` builds one; ``SPACES`` lists them; ``SearchSpace`` is the interface strategies use.
Importing this package registers them all (a new space module is imported here too: docs/extending.md). A space of
the user's own module is named by its import path instead, ``create_space("mypkg.spaces:ChainSpace")``."""

from typing import Any

from lightning_nas.errors import ConfigError, check
from lightning_nas.plugins import FORM, is_import_path, load
from lightning_nas.spaces.base import (
    HOOKS,
    SPACES,
    Architecture,
    Growth,
    SearchSpace,
    SharedChild,
    Supernet,
    register_space,
    space_options,
    spaces_offering,
)
from lightning_nas.spaces import darts, enas_macro, enas_micro, nb201, pnas  # noqa: F401  (registers the spaces)
from lightning_nas.spaces.darts import GenotypeSpace


def space_class(name: str) -> type[SearchSpace]:
    """The space ``name`` names: a registered one, or a ``SearchSpace`` subclass in a module of the user's own by its
    import path (``package.module:Class``); anything else is a one-line ConfigError."""
    if not is_import_path(name):
        check(name in SPACES, f"unknown search space {name!r}; registered spaces: {', '.join(sorted(SPACES))}, or a "
                              f"space of your own by its import path, {FORM}")
        return SPACES[name]
    space = load(name, "search space")
    check(isinstance(space, type) and issubclass(space, SearchSpace),
          f"search space {name!r} is {space!r}, not a subclass of lightning_nas.spaces.SearchSpace")
    return space


def create_space(name: str, **options: Any) -> SearchSpace:
    """The space ``name`` names (``space_class``) with ``options`` (e.g. ``nodes``, ``ops``), kept as
    ``space.options``: whatever builds the space again (a candidate's network, a checkpoint, a worker process) does so
    with ``create_space(space.name, **space.options)``. A space of the user's own takes its import path as its
    ``name``, so it is found again too."""
    cls = space_class(name)
    try:
        space = cls(**options)
    except TypeError as error:
        raise ConfigError(f"search space {name!r}: {error}") from None
    if is_import_path(name):
        setattr(space, "name", name)  # an instance's own name: the class's stays what its module says
    space.options = dict(options)
    return space


__all__ = ["HOOKS", "SPACES", "Architecture", "GenotypeSpace", "Growth", "SearchSpace", "SharedChild", "Supernet",
           "create_space", "register_space", "space_class", "space_options", "spaces_offering"]
