"""The ENAS micro search space: a child network of cells whose every possible edge has its own shared weights.

A cell reads two inputs (nodes 0 and 1) and computes nodes 2..6; node i sums two edges ``op(input)`` with an input
``< i`` and an op from ENAS_MICRO_OPS. A sampled architecture (``MicroArchitecture``) picks, per cell type, the
(input, op) pair of every edge. The child holds one op module per (node, slot, input, op), so an architecture
selects a sub-network and every architecture that makes the same choice trains the same weights. The cell output
concatenates the computed nodes no other node used, then a 1x1 conv, whose weights are shared per node, maps them back
to F channels. (The authors' code also concatenates unused cell inputs; a Genotype cannot express that, so here,
as in the papers' figures, only computed nodes are.)

Reduction cells follow the authors' search child: the previous output is halved by a factorized reduction to 2F
channels, and a cell with the reduction architecture (all ops stride 1) reads that and the calibrated previous input.
"""

from __future__ import annotations

import operator
import random
from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.genotypes.genotype import CELL_TYPES, EDGES_PER_NODE
from lightning_nas.ops import ENAS_MICRO_OPS, FactorizedReduce, ReLUConvBN, create_op
from lightning_nas.spaces.base import register_space
from lightning_nas.spaces.darts import GenotypeSpace

Edge = tuple[int, str]
"""One sampled edge: (input node, op name)."""


@dataclass(frozen=True)
class MicroArchitecture:
    """A sampled micro architecture: per cell type, two (input, op) edges per computed node, node 2 first."""

    normal: tuple[Edge, ...]
    reduce: tuple[Edge, ...]

    def __post_init__(self) -> None:
        for cell in CELL_TYPES:
            edges = tuple((int(index), str(op)) for index, op in getattr(self, cell))
            object.__setattr__(self, cell, edges)
            if not edges or len(edges) % EDGES_PER_NODE:
                raise ValueError(f"{cell}: expected {EDGES_PER_NODE} edges per node, got {len(edges)}")
            for position, (index, op) in enumerate(edges):
                node = 2 + position // EDGES_PER_NODE
                if op not in ENAS_MICRO_OPS:
                    raise ValueError(f"{cell} node {node}: op {op!r} is not an ENAS micro op ({', '.join(ENAS_MICRO_OPS)})")
                if not 0 <= index < node:
                    raise ValueError(f"{cell} node {node}: input {index} out of range 0..{node - 1}")
        if len(self.normal) != len(self.reduce):
            raise ValueError("normal and reduce cells must have the same number of nodes")

    @classmethod
    def uniform(cls, num_nodes: int = 5, generator: torch.Generator | None = None) -> MicroArchitecture:
        """An architecture drawn uniformly: every edge's input and op independently, as random search samples."""

        def draw(n: int) -> int:
            return int(torch.randint(n, (), generator=generator))

        def cell() -> tuple[Edge, ...]:
            return tuple((draw(node), ENAS_MICRO_OPS[draw(len(ENAS_MICRO_OPS))])
                         for node in range(2, 2 + num_nodes) for _ in range(EDGES_PER_NODE))

        return cls(normal=cell(), reduce=cell())

    @classmethod
    def from_decisions(cls, decisions: Sequence[int], ops: Sequence[str] = ENAS_MICRO_OPS) -> MicroArchitecture:
        """The architecture ``ENASMicroSpace``'s decisions pick: per cell type (normal first), per edge its input
        node, then its op as an index into ``ops``."""
        half = len(decisions) // 2
        normal, reduce_ = (tuple((int(cell[k]), ops[cell[k + 1]]) for k in range(0, len(cell), 2))
                           for cell in (decisions[:half], decisions[half:]))
        return cls(normal=normal, reduce=reduce_)

    def decisions(self, ops: Sequence[str] = ENAS_MICRO_OPS) -> tuple[int, ...]:
        """``from_decisions``' inverse: per cell type and edge, its input node and its op's index into ``ops``."""
        return tuple(d for cell in CELL_TYPES for index, op in getattr(self, cell) for d in (index, ops.index(op)))

    @property
    def num_nodes(self) -> int:
        return len(self.normal) // EDGES_PER_NODE

    def loose_ends(self, cell: str) -> tuple[int, ...]:
        """Computed nodes that no node of ``cell`` reads: the cell output concatenates them."""
        used = {index for index, _ in getattr(self, cell)}
        return tuple(node for node in range(2, 2 + self.num_nodes) if node not in used)

    def to_genotype(self) -> Genotype:
        """The Genotype that final networks (NetworkCIFAR, the final training recipe) stack."""
        return Genotype(
            normal=tuple((op, index) for index, op in self.normal),
            normal_concat=self.loose_ends("normal"),
            reduce=tuple((op, index) for index, op in self.reduce),
            reduce_concat=self.loose_ends("reduce"),
        )


class Calibrate(nn.Module):
    """Brings both cell inputs to C channels at the size of the second (the authors' ``_maybe_calibrate_size``)."""

    def __init__(self, C_prev_prev: int, C_prev: int, C: int, reduce_prev_prev: bool) -> None:
        super().__init__()
        if reduce_prev_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, affine=False) if C_prev_prev != C else nn.Identity()
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, affine=False) if C_prev != C else nn.Identity()

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> list[torch.Tensor]:
        return [self.preprocess0(s0), self.preprocess1(s1)]


class MicroCell(nn.Module):
    """A search cell: every (node, slot, input, op) edge holds its own op; an architecture picks which run."""

    def __init__(self, C_prev_prev: int, C_prev: int, C: int, reduce_prev_prev: bool, num_nodes: int = 5,
                 ops: Sequence[str] = ENAS_MICRO_OPS) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.calibrate = Calibrate(C_prev_prev, C_prev, C, reduce_prev_prev)
        self.edges = nn.ModuleDict({
            self.edge_key(node, slot, index, op): create_op(op, C, stride=1, affine=False)
            for node in range(2, 2 + num_nodes)
            for slot in range(EDGES_PER_NODE)
            for index in range(node)
            for op in ops
        })
        # One F x F 1x1 conv weight per node; the weights of the loose ends are gathered into the output conv.
        self.output_weight = nn.Parameter(torch.empty(num_nodes, C, C))
        nn.init.kaiming_normal_(self.output_weight)
        self.output_bn = nn.BatchNorm2d(C, affine=False)

    @staticmethod
    def edge_key(node: int, slot: int, index: int, op: str) -> str:
        return f"node{node}_slot{slot}_from{index}_{op}"

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, edges: tuple[Edge, ...], loose_ends: tuple[int, ...]) -> torch.Tensor:
        if len(edges) != EDGES_PER_NODE * self.num_nodes:
            raise ValueError(f"cell has {self.num_nodes} nodes but the architecture gives {len(edges)} edges")
        states = self.calibrate(s0, s1)
        for node in range(2, 2 + self.num_nodes):
            pair = edges[EDGES_PER_NODE * (node - 2) : EDGES_PER_NODE * (node - 1)]
            states.append(reduce(operator.add, (self.edges[self.edge_key(node, slot, index, op)](states[index])
                                                for slot, (index, op) in enumerate(pair))))  # sum() would copy one
        out = F.relu(torch.cat([states[node] for node in loose_ends], dim=1))
        weight = torch.cat([self.output_weight[node - 2] for node in loose_ends], dim=1)
        return self.output_bn(F.conv2d(out, weight[..., None, None]))


class MicroChild(nn.Module):
    """The ENAS micro child (the space's shared child, ``spaces.SharedChild``): stem, ``num_layers`` normal cells
    with a reduction after each third, pool, classifier; every edge holds one op per name in ``ops``.

    ``forward(x, path)`` runs the sub-network ``path`` selects: a ``MicroArchitecture`` or its decisions. Defaults are
    the authors' search child: F=20, 6 normal cells, reductions at layers 2 and 5 (8 cells in all), dropout 0.1
    before the classifier.
    """

    def __init__(self, C: int = 20, num_layers: int = 6, num_nodes: int = 5, num_classes: int = 10,
                 in_chans: int = 3, stem_multiplier: int = 3, dropout: float = 0.1,
                 ops: Sequence[str] = ENAS_MICRO_OPS) -> None:
        super().__init__()
        if num_layers < 3:
            raise ValueError(f"num_layers must be at least 3 (one normal cell per stage), got {num_layers}")
        self.num_nodes, self.ops = num_nodes, tuple(ops)
        pool_distance = num_layers // 3
        self.reduction_layers = (pool_distance, 2 * pool_distance + 1)
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        self.cells = nn.ModuleList()
        self.reductions = nn.ModuleDict()
        C_prev_prev, C_prev, C_curr = C_stem, C_stem, C
        for layer in range(num_layers + 2):
            reduction = layer in self.reduction_layers
            if reduction:
                C_curr *= 2
                self.reductions[str(layer)] = FactorizedReduce(C_prev, C_curr, affine=False)
                C_prev_prev, C_prev = C_prev, C_curr
            self.cells.append(MicroCell(C_prev_prev, C_prev, C_curr, reduction, num_nodes, self.ops))
            C_prev_prev, C_prev = C_prev, C_curr
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(C_prev, num_classes)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter: the child has no architecture parameter."""
        return list(self.parameters())

    def forward(self, x: torch.Tensor, path: MicroArchitecture | Sequence[int]) -> torch.Tensor:
        arch = path if isinstance(path, MicroArchitecture) else MicroArchitecture.from_decisions(path, self.ops)
        if arch.num_nodes != self.num_nodes:
            raise ValueError(f"architecture has {arch.num_nodes} nodes per cell, the child {self.num_nodes}")
        loose_ends = {cell: arch.loose_ends(cell) for cell in CELL_TYPES}
        s0 = s1 = self.stem(x)
        for layer, cell in enumerate(self.cells):
            kind = "normal"
            if layer in self.reduction_layers:
                kind = "reduce"
                s0, s1 = s1, self.reductions[str(layer)](s1)
            s0, s1 = s1, cell(s0, s1, getattr(arch, kind), loose_ends[kind])
        x = F.adaptive_avg_pool2d(F.relu(s1), 1).flatten(1)
        return self.classifier(self.dropout(x))


def random_architecture(rng: random.Random, num_nodes: int = 5, ops: Sequence[str] = ENAS_MICRO_OPS) -> MicroArchitecture:
    """A micro architecture drawn uniformly, as an untrained controller would: every edge picks any earlier node
    (both edges of a node may pick the same one) and any op."""

    def cell() -> tuple[Edge, ...]:
        return tuple((rng.randrange(2 + i), rng.choice(ops)) for i in range(num_nodes) for _ in range(EDGES_PER_NODE))

    return MicroArchitecture(normal=cell(), reduce=cell())


@register_space
class ENASMicroSpace(GenotypeSpace):
    """ENAS micro cells: per cell type, every edge picks any earlier node and any op (``random_architecture``); the
    cell concatenates its loose ends. The shared child is ``MicroChild``."""

    name = "enas_micro"

    def __init__(self, nodes: int = 5, ops: Sequence[str] = ENAS_MICRO_OPS) -> None:
        if nodes < 1:
            raise ConfigError(f"nodes={nodes}: an ENAS micro cell needs at least 1 node")
        self.nodes, self.ops = nodes, tuple(ops)

    def choices(self) -> tuple[int, ...]:
        per_cell = [n for i in range(self.nodes) for _ in range(EDGES_PER_NODE) for n in (2 + i, len(self.ops))]
        return tuple(per_cell * 2)

    def decisions(self, arch: Genotype) -> tuple[int, ...]:
        out: list[int] = []
        for cell in CELL_TYPES:
            for op, index in getattr(arch, cell):
                if op not in self.ops:
                    raise ConfigError(f"op {op!r} of the {cell} cell is not an op of this ENAS micro space "
                                      f"({', '.join(self.ops)})")
                out += [index, self.ops.index(op)]
        return tuple(out)

    def decode(self, decisions: Sequence[int]) -> Genotype:
        return MicroArchitecture.from_decisions(decisions, self.ops).to_genotype()

    def draw(self, rng: random.Random) -> Genotype:
        return random_architecture(rng, self.nodes, self.ops).to_genotype()

    def shared_child(self, num_classes: int, in_chans: int, C: int = 20, layers: int = 6, **options: Any
                     ) -> MicroChild:
        """``MicroChild`` with ``layers`` normal cells of ``C`` channels (the authors' 20 and 6 by default), this
        space's nodes and ops; ``options``: ``stem_multiplier``, ``dropout``."""
        unknown = sorted(set(options) - {"stem_multiplier", "dropout"})
        if unknown:
            raise ConfigError(f"the enas_micro shared child does not take {', '.join(unknown)}; it takes C, layers, "
                              f"stem_multiplier and dropout")
        return MicroChild(C, layers, self.nodes, num_classes, in_chans, ops=self.ops, **options)
