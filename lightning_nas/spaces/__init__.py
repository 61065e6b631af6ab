"""Search spaces, registered by name: DARTS cells, ENAS micro cells and macro networks, PNAS cells and NAS-Bench-201
cells. ``create_space("nb201")`` builds one; ``SPACES`` lists them; ``SearchSpace`` is the interface strategies use.
Importing this package registers them all (a new space module is imported here too: docs/extending.md)."""

from lightning_nas.spaces.base import (
    HOOKS,
    SPACES,
    Architecture,
    GenotypeSpace,
    SearchSpace,
    SharedChild,
    Supernet,
    create_space,
    register_space,
    space_options,
    spaces_offering,
)
from lightning_nas.spaces import darts, enas_macro, enas_micro, nb201, pnas  # noqa: F401  (registers the spaces)

__all__ = ["HOOKS", "SPACES", "Architecture", "GenotypeSpace", "SearchSpace", "SharedChild", "Supernet",
           "create_space", "register_space", "space_options", "spaces_offering"]
