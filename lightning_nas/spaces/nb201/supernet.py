"""The supernet of the NAS-Bench-201 space: the benchmark's network with a mixed op on every cell edge, which DARTS,
GDAS and β-DARTS search (a mixture supernet) and ENAS and RSPS train along one cell's path (a shared child)."""

from __future__ import annotations

from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.ops import NB201_OPS
from lightning_nas.spaces.nb201.architecture import NB201Architecture
from lightning_nas.spaces.nb201.cell import EDGE_INPUTS, NB201_EDGES, NB201_NODES, NODE_STARTS, nb201_body
from lightning_nas.spaces.oneshot import MixedOp, SharedInput, frozen, gumbel_hard


class NB201SearchNetwork(nn.Module):
    """The supernet of the NAS-Bench-201 space: the benchmark's network with a mixed op on every cell edge (one α of
    6 edges x 5 ops shared by all cells, as the benchmark's DARTS baseline searches it). It is a mixture supernet
    (``spaces.Supernet``: ``arch_parameters``, ``weight_parameters``, ``alphas``, ``forward(x, alpha_grad,
    weight_grad)``, ``genotype``), so DARTS and GDAS search it unchanged, and a shared child (``spaces.SharedChild``):
    ``forward(x, path=...)`` runs the weight-sharing child of one architecture (ENAS, random search with parameter
    sharing): only the chosen op of each edge, without α."""

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, in_chans: int = 3,
                 primitives: Sequence[str] = NB201_OPS) -> None:
        super().__init__()
        self.primitives = tuple(primitives)
        if set(self.primitives) - set(NB201_OPS) or not self.primitives:
            raise ConfigError(f"the NAS-Bench-201 supernet's primitives must be among {', '.join(NB201_OPS)}, "
                              f"got {list(primitives)}")
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nb201_body(C, N, lambda width: nn.ModuleList(MixedOp(width, 1, self.primitives)
                                                                  for _ in NB201_EDGES))
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.classifier = nn.Linear(4 * C, num_classes)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(self.primitives)))
        self.tau: float | None = None
        """GDAS's Gumbel temperature: None weighs every op by softmax(α) (DARTS); a float samples one op per edge."""

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def alphas(self) -> dict[str, nn.Parameter]:
        """α by cell type: one for all cells."""
        return {"cell": self.alpha}

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p is not self.alpha]

    def forward(self, x: torch.Tensor, alpha_grad: bool = True, weight_grad: bool = True,
                path: NB201Architecture | Sequence[int] | None = None) -> torch.Tensor:
        """As ``SearchNetwork.forward``: ``alpha_grad``/``weight_grad`` False treat α / the weights as constants.

        ``path``: one architecture (or its op index per edge, into ``primitives``): every edge computes only its
        op (``none`` gives zeros), as the mixed ops would with one-hot weights on the path, and α takes no part."""
        if not weight_grad:
            with frozen(self.weight_parameters()):
                return self(x, alpha_grad, path=path)
        path_ops = None if path is None else self.path_indices(path)
        weights: torch.Tensor | None = None
        chosen: Sequence[int | None] = [None] * len(NB201_EDGES)
        if path_ops is None:
            if self.tau is None:
                weights = F.softmax(self.alpha, dim=-1)
            else:
                weights, chosen = gumbel_hard(self.alpha, self.tau)
            if not alpha_grad:
                weights = weights.detach()
        x = self.stem(x)
        for layer in self.cells:
            if isinstance(layer, nn.ModuleList):  # a mixed cell, as NB201Cell; the edges reading a node share its ReLU
                shared = [SharedInput() for _ in range(NB201_NODES)]
                nodes = [x]
                for e, (edge, i, starts) in enumerate(zip(layer, EDGE_INPUTS, NODE_STARTS)):
                    if path_ops is not None:  # along the path: the chosen op alone
                        out = cast(MixedOp, edge).ops[path_ops[e]](nodes[i])
                    else:
                        out = edge(nodes[i], cast(torch.Tensor, weights)[e], shared[i], chosen[e])
                    if starts:
                        nodes.append(out)
                    else:
                        nodes[-1] = nodes[-1] + out
                x = nodes[-1]
            else:
                x = layer(x)
        return self.classifier(self.lastact(x).mean((2, 3)))

    def path_indices(self, path: NB201Architecture | Sequence[int]) -> list[int]:
        """``path`` as one index into ``primitives`` per edge."""
        if isinstance(path, NB201Architecture):
            outside = sorted(set(path.ops) - set(self.primitives))
            if outside:
                raise ConfigError(f"cell {path} uses {', '.join(outside)}, outside the supernet's ops "
                                  f"{', '.join(self.primitives)}")
            return [self.primitives.index(op) for op in path.ops]
        indices = [int(k) for k in path]
        if len(indices) != len(NB201_EDGES) or not all(0 <= k < len(self.primitives) for k in indices):
            raise ConfigError(f"path {indices}: give one op index in 0..{len(self.primitives) - 1} per edge "
                              f"({len(NB201_EDGES)} edges)")
        return indices

    def genotype(self, max_skip_connect: int | None = None) -> NB201Architecture:
        """The strongest op of every edge (``none`` included, as the benchmark derives); ``max_skip_connect`` caps
        the skip_connects by turning the weakest ones into their next strongest op."""
        weights = F.softmax(self.alpha.detach(), dim=-1)
        ops = [self.primitives[int(k)] for k in weights.argmax(-1)]
        if max_skip_connect is not None and "skip_connect" in self.primitives:
            skip = self.primitives.index("skip_connect")
            edges = sorted((e for e, op in enumerate(ops) if op == "skip_connect"), key=lambda e: -weights[e, skip])
            for e in edges[max_skip_connect:]:
                ranked = weights[e].argsort(descending=True).tolist()
                ops[e] = self.primitives[next(k for k in ranked if k != skip)]
        return NB201Architecture(tuple(ops))
