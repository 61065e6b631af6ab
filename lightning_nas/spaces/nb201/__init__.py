"""The NAS-Bench-201 family (Dong & Yang, ICLR 2020), one module per part: the architecture and its text form
(``architecture``), the cell, the residual block between stages and the skeleton stacking them (``cell``), the
benchmark's network a candidate trains in (``network``), the supernet the one-shot strategies search (``supernet``)
and the space itself (``space``, registered as ``nb201``)."""

from lightning_nas.spaces.nb201.architecture import NB201Architecture, resolve_nb201
from lightning_nas.spaces.nb201.cell import (
    EDGE_INPUTS,
    NB201_EDGES,
    NB201_NODES,
    NODE_STARTS,
    NB201Cell,
    ResidualReduction,
    nb201_body,
)
from lightning_nas.spaces.nb201.network import BEST_CIFAR10, NB201Network
from lightning_nas.spaces.nb201.space import SUPERNET_DEFAULTS, NB201Space
from lightning_nas.spaces.nb201.supernet import NB201SearchNetwork

__all__ = ["BEST_CIFAR10", "EDGE_INPUTS", "NB201_EDGES", "NB201_NODES", "NODE_STARTS", "SUPERNET_DEFAULTS",
           "NB201Architecture", "NB201Cell", "NB201Network", "NB201SearchNetwork", "NB201Space", "ResidualReduction",
           "nb201_body", "resolve_nb201"]
