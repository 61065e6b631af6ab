"""The discrete cells of final networks, under one import path; each lives with its family: DARTS-style ``Cell`` in
``spaces/darts/cell.py``, NAS-Bench-201's cell, residual block and skeleton in ``spaces/nb201/cell.py``."""

from lightning_nas.spaces.darts.cell import Cell
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
