"""The DARTS cell space (Liu et al., ICLR 2019) and what every space of DARTS-style cell pairs shares
(``GenotypeSpace``: architectures are Genotypes, trained in ``NetworkCIFAR``; ENAS's micro space and PNAS's are
such spaces too)."""

from __future__ import annotations

import itertools
import random
from typing import Any, Sequence

from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.genotypes.genotype import CELL_TYPES, Edge
from lightning_nas.ops import DARTS_PRIMITIVES
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.darts.network import NetworkCIFAR
from lightning_nas.spaces.darts.supernet import SearchNetwork
from lightning_nas.spaces.oneshot import check_primitives


class GenotypeSpace(SearchSpace):
    """A space of DARTS-style cell pairs: architectures are Genotypes, stacked into ``NetworkCIFAR`` proxies."""

    def to_json(self, arch: Genotype) -> str:
        return arch.to_json()

    def from_json(self, text: str) -> Genotype:
        return Genotype.from_json(text)

    def build(self, arch: Genotype, num_classes: int, in_chans: int, C: int = 16, N: int = 5) -> nn.Module:
        """``NetworkCIFAR`` of 3 stages of ``N`` cells from ``C`` channels, without auxiliary head."""
        return NetworkCIFAR(arch, C=C, layers=3 * N, num_classes=num_classes, in_chans=in_chans, auxiliary=False)


def random_genotype(rng: random.Random, nodes: int = 4, primitives: Sequence[str] = DARTS_PRIMITIVES) -> Genotype:
    """A cell pair drawn uniformly from the DARTS space (the random-search baseline of Li & Talwalkar): every node
    reads two distinct earlier nodes, each through an op other than ``none``, as ``derive_cell`` would keep."""
    ops = [op for op in check_primitives(primitives) if op != "none"]

    def cell() -> tuple[Edge, ...]:
        return tuple((rng.choice(ops), j) for i in range(nodes) for j in sorted(rng.sample(range(2 + i), 2)))

    concat = tuple(range(2, 2 + nodes))
    return Genotype(normal=cell(), normal_concat=concat, reduce=cell(), reduce_concat=concat)


@register_space
class DARTSSpace(GenotypeSpace):
    """DARTS cells: per cell type and node, two distinct earlier inputs (one of C(2+i, 2) pairs) and an op other
    than ``none`` on each, as ``derive_cell`` keeps; the mixture supernet is ``SearchNetwork``."""

    name = "darts"

    def __init__(self, nodes: int = 4, ops: Sequence[str] = DARTS_PRIMITIVES) -> None:
        if nodes < 1:
            raise ConfigError(f"nodes={nodes}: a DARTS cell needs at least 1 node")
        self.nodes, self.primitives = nodes, check_primitives(ops)
        self.ops = tuple(op for op in self.primitives if op != "none")
        self.pairs = [list(itertools.combinations(range(2 + i), 2)) for i in range(nodes)]

    def choices(self) -> tuple[int, ...]:
        per_cell = [n for pairs in self.pairs for n in (len(pairs), len(self.ops), len(self.ops))]
        return tuple(per_cell * 2)

    def decisions(self, arch: Genotype) -> tuple[int, ...]:
        out: list[int] = []
        for cell in CELL_TYPES:
            edges = getattr(arch, cell)
            if arch.num_nodes(cell) != self.nodes:
                raise ConfigError(f"{cell} cell has {arch.num_nodes(cell)} nodes; this DARTS space has {self.nodes}")
            for i in range(self.nodes):
                (op_a, a), (op_b, b) = sorted(edges[2 * i: 2 * i + 2], key=lambda edge: edge[1])
                if a == b or op_a not in self.ops or op_b not in self.ops:
                    raise ConfigError(f"{cell} node {i + 2} reads {[op_a, a]} and {[op_b, b]}: not in the DARTS space "
                                      f"(two distinct inputs through ops among {', '.join(self.ops)})")
                out += [self.pairs[i].index((a, b)), self.ops.index(op_a), self.ops.index(op_b)]
        return tuple(out)

    def decode(self, decisions: Sequence[int]) -> Genotype:
        per_cell = 3 * self.nodes
        cells = []
        for start in (0, per_cell):
            d = decisions[start: start + per_cell]
            cells.append(tuple(edge for i in range(self.nodes)
                               for edge in zip((self.ops[d[3 * i + 1]], self.ops[d[3 * i + 2]]), self.pairs[i][d[3 * i]])))
        concat = tuple(range(2, 2 + self.nodes))
        return Genotype(normal=cells[0], normal_concat=concat, reduce=cells[1], reduce_concat=concat)

    def draw(self, rng: random.Random) -> Genotype:
        return random_genotype(rng, self.nodes, self.primitives)

    def mixture_supernet(self, num_classes: int, in_chans: int, C: int = 16, layers: int = 8, **options: Any
                         ) -> SearchNetwork:
        return SearchNetwork(C, layers, num_classes, in_chans, self.nodes, primitives=self.primitives, **options)
