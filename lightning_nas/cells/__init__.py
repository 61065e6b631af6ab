"""Cells of final networks (search-space cells live in ``lightning_nas.spaces``)."""

from lightning_nas.cells.cell import Cell
from lightning_nas.spaces.nb201.cell import (
    EDGE_INPUTS,
    NB201_EDGES,
    NB201_NODES,
    NODE_STARTS,
    NB201Cell,
    ResidualReduction,
    nb201_body,
)

__all__ = ["EDGE_INPUTS", "NB201_EDGES", "NB201_NODES", "NODE_STARTS", "Cell", "NB201Cell", "ResidualReduction",
           "nb201_body"]
