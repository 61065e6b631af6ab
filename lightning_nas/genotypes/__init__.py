"""Genotypes: discrete cell architectures, their validation, text and diagram forms, and the published cells.

The diagram functions load on first use: they import matplotlib, which ``import lightning_nas`` should not pay for.
"""

from typing import Any

from lightning_nas.genotypes.genotype import (
    Genotype,
    GenotypeError,
    GenotypeLike,
    published_genotypes,
    resolve_genotype,
)

__all__ = [
    "Genotype",
    "GenotypeError",
    "GenotypeLike",
    "cell_diagram_png",
    "draw_cell",
    "published_genotypes",
    "resolve_genotype",
    "save_cell_diagram",
]

DIAGRAM_FUNCTIONS = ("cell_diagram_png", "draw_cell", "save_cell_diagram")


def __getattr__(name: str) -> Any:
    if name in DIAGRAM_FUNCTIONS:
        from lightning_nas.genotypes import diagram

        return getattr(diagram, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
