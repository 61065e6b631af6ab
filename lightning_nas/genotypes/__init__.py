"""Genotypes: discrete cell architectures, their validation, text and diagram forms, and the published cells."""

from lightning_nas.genotypes.diagram import cell_diagram_png, draw_cell, save_cell_diagram
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
