"""NAS-Bench-201's building blocks (Dong & Yang, ICLR 2020): its cell, the residual block that joins its stages, and
the skeleton both the benchmark's networks and its supernet stack them in.

The cell has 4 nodes; node j sums one edge ``op(node i)`` from every earlier node i, and the cell outputs node 3.
Every op keeps the channels and the size: reductions happen only in the residual blocks between the stages.
"""


from typing import Callable, Sequence

import torch
from torch import nn

from lightning_nas.ops import ReLUConvBN, create_op

NB201_NODES = 4
NB201_EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NB201_NODES) for i in range(j))
"""(node, input) of the 6 edges, in the order of the benchmark's string form: 1←0, 2←0, 2←1, 3←0, 3←1, 3←2."""


EDGE_INPUTS: tuple[int, ...] = tuple(i for _, i in NB201_EDGES)
"""The node each edge reads."""
NODE_STARTS: tuple[bool, ...] = tuple(i == 0 for _, i in NB201_EDGES)
"""Whether an edge is its node's first (node j's edges come in a row, the one from node 0 first)."""


class NB201Cell(nn.Module):
    """A discrete NAS-Bench-201 cell: one op per edge; node j = Σ_{i<j} op_{i,j}(node i), output node 3."""

    def __init__(self, ops: Sequence[str], C: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(create_op(op, C, 1, affine=True) for op in ops)
        self.inputs, self.starts = list(EDGE_INPUTS), list(NODE_STARTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for k, edge in enumerate(self.edges):  # a loop TorchScript compiles: no callables, no reduce
            out = edge(nodes[self.inputs[k]])
            if self.starts[k]:
                nodes.append(out)
            else:
                nodes[-1] = nodes[-1] + out
        return nodes[-1]


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
