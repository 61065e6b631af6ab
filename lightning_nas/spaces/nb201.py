"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): one op from NB201_OPS on each of the cell's 6 edges, 5^6 =
15,625 cells, and its DARTS-style supernet.

An architecture is written the benchmark's way, node by node, each edge as ``op~input``:
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.cells.nb201 import EDGE_INPUTS, NB201_EDGES, NB201_NODES, NODE_STARTS, nb201_body
from lightning_nas.errors import ConfigError
from lightning_nas.files import write_atomic
from lightning_nas.ops import NB201_OPS, create_op
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.oneshot import MixedOp, SharedInput, frozen, gumbel_hard


@dataclass(frozen=True)
class NB201Architecture:
    """One op per edge, in NB201_EDGES order (1←0, 2←0, 2←1, 3←0, 3←1, 3←2)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.ops) != len(NB201_EDGES):
            raise ConfigError(f"a NAS-Bench-201 cell has {len(NB201_EDGES)} edges, got {len(self.ops)} ops")
        for op, (node, index) in zip(self.ops, NB201_EDGES):
            if op not in NB201_OPS:
                raise ConfigError(f"NAS-Bench-201 edge {op}~{index} of node {node}: unknown op {op!r}; "
                                  f"the space's ops are {', '.join(NB201_OPS)}")

    def to_string(self) -> str:
        """The benchmark's string form."""
        nodes = ("|" + "|".join(f"{op}~{i}" for op, (j, i) in zip(self.ops, NB201_EDGES) if j == node) + "|"
                 for node in range(1, NB201_NODES))
        return "+".join(nodes)

    @classmethod
    def from_string(cls, text: str) -> NB201Architecture:
        """Parse the benchmark's string form; a malformed part ends in one line that names it."""
        nodes = text.strip().split("+")
        if len(nodes) != NB201_NODES - 1:
            raise ConfigError(f"NAS-Bench-201 cell {text!r}: expected {NB201_NODES - 1} nodes joined by '+', "
                              f"got {len(nodes)}")
        ops: list[str] = []
        for node, part in enumerate(nodes, start=1):
            edges = part.strip("|").split("|") if part.strip("|") else []
            if len(edges) != node:
                raise ConfigError(f"NAS-Bench-201 cell {text!r}: node {node} ({part!r}) needs {node} edges "
                                  f"op~input, one from each earlier node, got {len(edges)}")
            for i, edge in enumerate(edges):
                op, _, index = edge.partition("~")
                if index != str(i):
                    raise ConfigError(f"NAS-Bench-201 cell {text!r}: edge {edge!r} of node {node} must read node {i} "
                                      f"(write it {op}~{i}); node {node}'s edges read nodes 0..{node - 1} in order")
                ops.append(op)
        return cls(tuple(ops))

    def to_dict(self) -> dict[str, str]:
        return {"arch": self.to_string()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path: str | os.PathLike) -> str:
        """Write as JSON atomically (temporary file, then rename), as a search's ``genotype.json``."""
        return write_atomic(path, self.to_json() + "\n")

    @classmethod
    def from_json(cls, text: str) -> NB201Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"a NAS-Bench-201 genotype file holds {{\"arch\": \"|op~0|+|...|\"}}; this is not JSON "
                              f"({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise ConfigError('a NAS-Bench-201 genotype file holds {"arch": "|op~0|+|...|"}; this one has no "arch"')
        return cls.from_string(data["arch"])

    def __str__(self) -> str:
        return self.to_string()


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


SUPERNET_DEFAULTS = {"stem_multiplier": 3, "partial_channels": 1, "checkpoint_cells": 0, "recompute_ops": False}
"""DARTS supernet options the NB201 supernet accepts only at these values (it has a C-channel stem and plain mixed
ops)."""


@register_space
class NB201Space(SearchSpace):
    """NAS-Bench-201 cells: one of ``ops`` (the benchmark's five by default) on each of the 6 edges. Candidates
    train in the benchmark's network (``networks.nb201``); ``NB201SearchNetwork`` is both its mixture supernet and,
    run along one cell's path, its shared child."""

    name = "nb201"

    def __init__(self, ops: Sequence[str] = NB201_OPS) -> None:
        unknown = sorted(set(ops) - set(NB201_OPS))
        if unknown or not ops:
            raise ConfigError(f"NAS-Bench-201 ops must be among {', '.join(NB201_OPS)}, got {list(ops)}")
        self.ops = tuple(ops)

    def choices(self) -> tuple[int, ...]:
        return (len(self.ops),) * len(NB201_EDGES)

    def decisions(self, arch: NB201Architecture) -> tuple[int, ...]:
        outside = sorted(set(arch.ops) - set(self.ops))
        if outside:
            raise ConfigError(f"cell {arch} uses {', '.join(outside)}, outside this space's ops {', '.join(self.ops)}")
        return tuple(self.ops.index(op) for op in arch.ops)

    def decode(self, decisions: Sequence[int]) -> NB201Architecture:
        return NB201Architecture(tuple(self.ops[d] for d in decisions))

    def key(self, arch: NB201Architecture) -> str:
        """The benchmark's op index of each edge, e.g. ``333313`` (the best CIFAR-10 cell): short and fast."""
        return "".join(str(NB201_OPS.index(op)) for op in arch.ops)

    def to_json(self, arch: NB201Architecture) -> str:
        return arch.to_json()

    def from_json(self, text: str) -> NB201Architecture:
        return NB201Architecture.from_json(text)

    def to_string(self, arch: NB201Architecture) -> str:
        return arch.to_string()

    def from_string(self, text: str) -> NB201Architecture:
        return NB201Architecture.from_string(text)

    def build(self, arch: NB201Architecture, num_classes: int, in_chans: int, C: int, N: int) -> nn.Module:
        from lightning_nas.networks.nb201 import NB201Network  # networks stack spaces' cells: import on use

        return NB201Network(arch, C=C, N=N, num_classes=num_classes, in_chans=in_chans)

    def num_params(self, arch: NB201Architecture, num_classes: int, in_chans: int, C: int, N: int) -> int:
        """As built, counted on the meta device, but per part: the network without its edge ops (every edge
        ``none``) plus each edge's op at each stage's width, N times: a cell's edges hold their own weights."""
        parts = _part_params(self.ops, num_classes, in_chans, C, N)
        return parts["skeleton"] + N * sum(parts[op, stage] for op in arch.ops for stage in range(3))

    def mixture_supernet(self, num_classes: int, in_chans: int, C: int = 16, layers: int = 15, **options: Any
                         ) -> NB201SearchNetwork:
        """The supernet of ``layers`` cells (three stages of layers // 3); DARTS's other supernet options have no
        meaning here and are refused unless left at their defaults."""
        unsupported = {k: v for k, v in options.items() if v != SUPERNET_DEFAULTS.get(k, object())}
        if unsupported:
            raise ConfigError(f"the nb201 supernet does not take {', '.join(f'{k}={v}' for k, v in unsupported.items())}"
                              f"; leave {' and '.join(unsupported)} at the default or search the darts space")
        return self._supernet(num_classes, in_chans, C, layers)

    def shared_child(self, num_classes: int, in_chans: int, C: int = 16, layers: int = 15, **options: Any
                     ) -> NB201SearchNetwork:
        """The same supernet of ``layers`` cells, run along one cell's decisions (``forward(x, path=...)``: only the
        chosen op of each edge, without α); it takes no other option."""
        if options:
            given = ", ".join(f"{k}={v}" for k, v in options.items())
            raise ConfigError(f"the nb201 shared child does not take {given}; leave {' and '.join(options)} out")
        return self._supernet(num_classes, in_chans, C, layers)

    def _supernet(self, num_classes: int, in_chans: int, C: int, layers: int) -> NB201SearchNetwork:
        if layers < 3:
            raise ConfigError(f"layers={layers}: the nb201 supernet needs at least 3 cells, one per stage")
        return NB201SearchNetwork(C, layers // 3, num_classes, in_chans, self.ops)


@functools.cache
def _part_params(ops: tuple[str, ...], num_classes: int, in_chans: int, C: int, N: int) -> dict[Any, int]:
    """Parameters of the NB201 network without edge ops (key "skeleton") and of each op at each stage's width."""
    from lightning_nas.networks.nb201 import NB201Network  # networks stack spaces' cells: import on use

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        skeleton = count(NB201Network(NB201Architecture(("none",) * len(NB201_EDGES)), C, N, num_classes, in_chans))
        parts: dict[Any, int] = {(op, stage): count(create_op(op, C << stage)) for op in ops for stage in range(3)}
    return {"skeleton": skeleton, **parts}
