"""Cells of final networks (search-space cells live in ``lightning_nas.spaces``)."""

from lightning_nas.cells.cell import Cell

__all__ = ["Cell"]
