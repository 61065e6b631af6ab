"""The discrete cell of a final network, built from one cell of a Genotype."""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from lightning_nas.genotypes import Genotype
from lightning_nas.genotypes.genotype import EDGES_PER_NODE
from lightning_nas.ops import FactorizedReduce, ReLUConvBN, create_op


class Cell(nn.Module):
    """A cell: two preprocessed inputs, nodes that each sum two op(input) edges, output = concat of chosen nodes.

    In a reduction cell the edges that read the cell inputs have stride 2. When the previous cell reduced, the
    k-2 input is still at the larger size and goes through a factorized reduce instead of a 1x1 conv. Drop path
    zeroes whole edges (all but identities) during training; its rate is set from outside as training progresses.
    """

    def __init__(
        self,
        genotype: Genotype,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        cell = "reduce" if reduction else "normal"
        edges = getattr(genotype, cell)
        # lists, not tuples: TorchScript indexes them with the loop counter
        self.concat: list[int] = list(getattr(genotype, f"{cell}_concat"))
        self.inputs: list[int] = [index for _, index in edges]
        self.edges_per_node = EDGES_PER_NODE
        self.multiplier = len(self.concat)
        self.preprocess0 = FactorizedReduce(C_prev_prev, C) if reduction_prev else ReLUConvBN(C_prev_prev, C, 1)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1)
        self.ops = nn.ModuleList(
            create_op(op, C, stride=2 if reduction and index < 2 else 1, affine=True) for op, index in edges
        )
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Node j = sum of its edges op(state); written as one flat loop so that TorchScript and fx unroll it."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        node = states[0]  # typed for TorchScript; every node starts from its first edge
        for i, op in enumerate(self.ops):
            h = op(states[self.inputs[i]])
            if not isinstance(op, nn.Identity):
                h = self.drop_path(h)
            node = h if i % self.edges_per_node == 0 else node + h
            if i % self.edges_per_node == self.edges_per_node - 1:
                states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)
