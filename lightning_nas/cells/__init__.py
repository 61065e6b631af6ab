"""Cells of final networks (search-space cells live in ``lightning_nas.spaces``)."""

from lightning_nas.cells.cell import Cell
from lightning_nas.cells.nb201 import NB201_EDGES, NB201_NODES, NB201Cell, ResidualReduction, nb201_body, sum_edges

__all__ = ["NB201_EDGES", "NB201_NODES", "Cell", "NB201Cell", "ResidualReduction", "nb201_body", "sum_edges"]
