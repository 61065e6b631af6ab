"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): one op from NB201_OPS on each of the cell's 6 edges, 5^6 =
15,625 cells. Candidates train in the benchmark's network (``NB201Network``); ``NB201SearchNetwork`` is its supernet.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.ops import NB201_OPS, create_op
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.nb201.architecture import NB201Architecture
from lightning_nas.spaces.nb201.cell import NB201_EDGES
from lightning_nas.spaces.nb201.network import NB201Network
from lightning_nas.spaces.nb201.supernet import NB201SearchNetwork


SUPERNET_DEFAULTS = {"stem_multiplier": 3, "partial_channels": 1, "checkpoint_cells": 0, "recompute_ops": False}
"""DARTS supernet options the NB201 supernet accepts only at these values (it has a C-channel stem and plain mixed
ops)."""


@register_space
class NB201Space(SearchSpace):
    """NAS-Bench-201 cells: one of ``ops`` (the benchmark's five by default) on each of the 6 edges. Candidates
    train in the benchmark's network (``NB201Network``); ``NB201SearchNetwork`` is both its mixture supernet and,
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

    def build(self, arch: NB201Architecture, num_classes: int, in_chans: int, C: int = 16, N: int = 5) -> nn.Module:
        """3 stages of ``N`` cells at ``C``, 2C, 4C channels (the benchmark's network: C=16, N=5)."""
        return NB201Network(arch, C=C, N=N, num_classes=num_classes, in_chans=in_chans)

    def num_params(self, arch: NB201Architecture, num_classes: int, in_chans: int, **network: Any) -> int:
        """As built, counted on the meta device, but per part: the network without its edge ops (every edge
        ``none``) plus each edge's op at each stage's width, N times: a cell's edges hold their own weights."""
        size = self.network_options(**network)
        C, N = size["C"], size["N"]
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
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        skeleton = count(NB201Network(NB201Architecture(("none",) * len(NB201_EDGES)), C, N, num_classes, in_chans))
        parts: dict[Any, int] = {(op, stage): count(create_op(op, C << stage)) for op in ops for stage in range(3)}
    return {"skeleton": skeleton, **parts}
