"""NAS-Bench-201's building blocks (Dong & Yang, ICLR 2020): its cell, the residual block that joins its stages, and
the skeleton both the benchmark's networks and its supernet stack them in.

The cell has 4 nodes; node j sums one edge ``op(node i)`` from every earlier node i, and the cell outputs node 3.
Every op keeps the channels and the size: reductions happen only in the residual blocks between the stages.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Callable, Sequence

import torch
from torch import nn

from lightning_nas.ops import ReLUConvBN, create_op

NB201_NODES = 4
NB201_EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NB201_NODES) for i in range(j))
"""(node, input) of the 6 edges, in the order of the benchmark's string form: 1←0, 2←0, 2←1, 3←0, 3←1, 3←2."""


def sum_edges(edges: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """The cell's data flow: node j = Σ_{i<j} edge_{i,j}(node i), given one callable per edge in NB201_EDGES order."""
    nodes = [x]
    for j in range(1, NB201_NODES):
        first = sum(range(j))  # edges of node j start after those of nodes 1..j-1
        nodes.append(reduce(operator.add, (edges[first + i](nodes[i]) for i in range(j))))
    return nodes[-1]


class NB201Cell(nn.Module):
    """A discrete NAS-Bench-201 cell: one op per edge."""

    def __init__(self, ops: Sequence[str], C: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(create_op(op, C, 1, affine=True) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum_edges(list(self.edges), x)


class ResidualReduction(nn.Module):
    """The benchmark's ResNet basic block between stages: two ReLU-conv-BN 3x3 (the first with stride 2, doubling
    the channels) plus a shortcut of 2x2 average pooling and a 1x1 conv."""

    def __init__(self, C_in: int, C_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def nb201_body(C: int, N: int, make_cell: Callable[[int], nn.Module]) -> nn.ModuleList:
    """Three stages of ``N`` cells at C, 2C and 4C channels joined by residual reductions; ``make_cell(C)`` builds a
    cell (a discrete one for the benchmark's networks, a mixed one for its supernet)."""
    layers = nn.ModuleList()
    for stage in range(3):
        if stage:
            layers.append(ResidualReduction(C << (stage - 1), C << stage))
        layers.extend(make_cell(C << stage) for _ in range(N))
    return layers
