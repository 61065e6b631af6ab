"""The ENAS macro search space: a chain of layers, each one op on the previous layer plus skips to earlier layers.

Layer i applies one of ENAS_MACRO_OPS to layer i-1's output and adds the outputs of the earlier layers it picks
(skip connections), followed by BN. After each third of the layers, every stored output is halved by a
factorized reduction so later skips still fit. ``MacroNetwork`` is both the search child (``arch=None``: all six
ops per layer, shared by every architecture) and the network retrained from a ``MacroArchitecture`` (only the
chosen op per layer, channels doubled at each reduction as in the authors' final-training code).
"""

from __future__ import annotations

import json
import operator
import os
from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.files import read_text, write_atomic
from lightning_nas.ops import ENAS_MACRO_OPS, FactorizedReduce, create_op
from lightning_nas.spaces.base import SearchSpace, register_space


@dataclass(frozen=True)
class MacroArchitecture:
    """Per layer, the op (a name from ENAS_MACRO_OPS) and the skips: ``skips[i][j]`` is 1 when layer i adds
    layer j's output (j < i)."""

    ops: tuple[str, ...]
    skips: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(str(op) for op in self.ops))
        object.__setattr__(self, "skips", tuple(tuple(int(s) for s in row) for row in self.skips))
        if len(self.skips) != len(self.ops):
            raise ConfigError(f"need one skip row per layer: {len(self.ops)} ops but {len(self.skips)} skip rows")
        for layer, (op, row) in enumerate(zip(self.ops, self.skips)):
            if op not in ENAS_MACRO_OPS:
                raise ConfigError(f"layer {layer}: op {op!r} is not an ENAS macro op ({', '.join(ENAS_MACRO_OPS)})")
            if len(row) != layer or any(s not in (0, 1) for s in row):
                raise ConfigError(f"layer {layer}: skips must be {layer} zeros/ones (one per earlier layer), got {list(row)}")

    @classmethod
    def uniform(cls, num_layers: int = 12, generator: torch.Generator | None = None) -> MacroArchitecture:
        """An architecture drawn uniformly: every layer's op, and every skip on or off with probability 1/2."""
        ops = torch.randint(len(ENAS_MACRO_OPS), (num_layers,), generator=generator).tolist()
        skips = tuple(tuple(torch.randint(2, (layer,), generator=generator).tolist()) for layer in range(num_layers))
        return cls(tuple(ENAS_MACRO_OPS[op] for op in ops), skips)

    @classmethod
    def from_decisions(cls, decisions: Sequence[int], ops: Sequence[str] = ENAS_MACRO_OPS) -> MacroArchitecture:
        """The architecture ``ENASMacroSpace``'s decisions pick: per layer its op as an index into ``ops``, then one
        skip (0 or 1) per earlier layer."""
        chosen: list[str] = []
        skips: list[tuple[int, ...]] = []
        position = 0
        while position < len(decisions):
            layer = len(chosen)
            chosen.append(ops[decisions[position]])
            skips.append(tuple(decisions[position + 1: position + 1 + layer]))
            position += 1 + layer
        return cls(tuple(chosen), tuple(skips))

    def decisions(self, ops: Sequence[str] = ENAS_MACRO_OPS) -> tuple[int, ...]:
        """``from_decisions``' inverse."""
        return tuple(d for op, row in zip(self.ops, self.skips) for d in (ops.index(op), *row))

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    def skip_rate(self) -> float:
        """Fraction of possible skip connections that are on (the skip-KL penalty pulls this towards 0.4)."""
        possible = self.num_layers * (self.num_layers - 1) // 2
        return sum(map(sum, self.skips)) / max(possible, 1)

    def to_dict(self) -> dict[str, list]:
        return {"ops": list(self.ops), "skips": [list(row) for row in self.skips]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MacroArchitecture:
        if not isinstance(data, dict) or {"ops", "skips"} - set(data):
            raise ConfigError("a macro architecture is a mapping with 'ops' and 'skips'")
        return cls(ops=tuple(data["ops"]), skips=tuple(tuple(row) for row in data["skips"]))

    def save(self, path: str | os.PathLike) -> str:
        """Write as JSON atomically (temporary file, then rename)."""
        return write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> MacroArchitecture:
        text = read_text(path)
        if text is None:
            raise ConfigError(f"macro architecture file {str(path)!r} does not exist")
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, ValueError, TypeError) as error:
            raise ConfigError(f"{path}: not a macro architecture ({error})") from None

    def __str__(self) -> str:
        lines = [f"macro architecture ({self.num_layers} layers, skip rate {self.skip_rate():.2f}):"]
        for layer, (op, row) in enumerate(zip(self.ops, self.skips)):
            skips = [j for j, s in enumerate(row) if s]
            lines.append(f"  layer {layer} = {op}({f'layer {layer - 1}' if layer else 'stem'})"
                         + (f" + skips from {skips}" if skips else ""))
        return "\n".join(lines)


class MacroBranch(nn.Sequential):
    """One candidate op of a layer: 1x1 conv-BN-ReLU to C channels (the authors' ``inp_conv_1``), then the op."""

    def __init__(self, op: str, C_in: int, C: int, affine: bool) -> None:
        super().__init__(
            nn.Conv2d(C_in, C, 1, bias=False), nn.BatchNorm2d(C, affine=affine), nn.ReLU(), create_op(op, C, 1, affine)
        )


class MacroNetwork(nn.Module):
    """Stem conv, ``num_layers`` macro layers with reductions after each third, ReLU, pool, dropout, classifier.

    With ``arch=None`` this is the search child, the space's shared child (``spaces.SharedChild``: 36 channels
    throughout, all ops shared, ``forward(x, path)`` along a ``MacroArchitecture`` or its decisions); with an
    architecture it is the fixed network to retrain (``forward(x)``), channels doubling at each reduction.
    """

    def __init__(self, arch: MacroArchitecture | str | os.PathLike | dict | None = None, C: int = 36,
                 num_layers: int = 12, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        if isinstance(arch, dict):
            arch = MacroArchitecture.from_dict(arch)
        elif isinstance(arch, (str, os.PathLike)):
            arch = MacroArchitecture.load(arch)
        num_layers = arch.num_layers if arch is not None else num_layers
        self.arch = arch
        self.num_layers = num_layers
        pool_distance = num_layers // 3
        self.reduction_layers = (pool_distance - 1, 2 * pool_distance - 1)
        affine = arch is not None
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.layers = nn.ModuleList()
        self.layer_bns = nn.ModuleList()
        self.reductions = nn.ModuleList()
        C_in = C
        for layer in range(num_layers):
            ops = ENAS_MACRO_OPS if arch is None else (arch.ops[layer],)
            self.layers.append(nn.ModuleDict({op: MacroBranch(op, C_in, C, affine) for op in ops}))
            self.layer_bns.append(nn.BatchNorm2d(C, affine=affine))
            C_in = C
            if layer in self.reduction_layers:
                C_out = 2 * C if arch is not None else C
                self.reductions.append(nn.ModuleList(FactorizedReduce(C, C_out, affine) for _ in range(layer + 1)))
                C = C_in = C_out
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(C, num_classes)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter: the network has no architecture parameter."""
        return list(self.parameters())

    def forward(self, x: torch.Tensor, path: MacroArchitecture | Sequence[int] | None = None) -> torch.Tensor:
        arch = self.arch if path is None else path if isinstance(path, MacroArchitecture) else (
            MacroArchitecture.from_decisions(path))
        if arch is None:
            raise ValueError("the search child needs an architecture: call forward(x, path)")
        if arch.num_layers != self.num_layers:
            raise ValueError(f"architecture has {arch.num_layers} layers, the network {self.num_layers}")
        outputs: list[torch.Tensor] = []
        x = self.stem(x)
        reductions = iter(self.reductions)
        for layer, (branches, bn) in enumerate(zip(self.layers, self.layer_bns)):
            out = cast(nn.ModuleDict, branches)[arch.ops[layer]](x)
            skips = [outputs[j] for j, s in enumerate(arch.skips[layer]) if s]
            x = bn(out + reduce(operator.add, skips)) if skips else bn(out)  # sum() would add a 0 + tensor copy
            outputs.append(x)
            if layer in self.reduction_layers:
                outputs = [reduction(h) for reduction, h in zip(cast(nn.ModuleList, next(reductions)), outputs)]
                x = outputs[-1]
        x = F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)
        return self.classifier(self.dropout(x))


@register_space
class ENASMacroSpace(SearchSpace):
    """ENAS macro networks of ``layers`` layers: each layer's op, and each skip from an earlier layer on or off
    (``MacroArchitecture.uniform``). ``build`` ignores ``N``: the architecture fixes the depth; the shared child is
    ``MacroNetwork(None)`` of the space's ``layers``."""

    name = "enas_macro"

    def __init__(self, layers: int = 12) -> None:
        if layers < 3:
            raise ConfigError(f"layers={layers}: an ENAS macro network needs at least 3 layers (one per stage)")
        self.layers = layers

    def choices(self) -> tuple[int, ...]:
        return tuple(n for layer in range(self.layers) for n in (len(ENAS_MACRO_OPS), *[2] * layer))

    def decisions(self, arch: MacroArchitecture) -> tuple[int, ...]:
        if arch.num_layers != self.layers:
            raise ConfigError(f"macro architecture has {arch.num_layers} layers; this space has {self.layers}")
        return arch.decisions()

    def decode(self, decisions: Sequence[int]) -> MacroArchitecture:
        arch = MacroArchitecture.from_decisions(decisions)
        if arch.num_layers != self.layers:
            raise ConfigError(f"{len(decisions)} decisions make {arch.num_layers} layers; this space has {self.layers}")
        return arch

    def to_json(self, arch: MacroArchitecture) -> str:
        return json.dumps(arch.to_dict())

    def from_json(self, text: str) -> MacroArchitecture:
        try:
            return MacroArchitecture.from_dict(json.loads(text))
        except json.JSONDecodeError as error:
            raise ConfigError(f"a macro architecture is JSON with 'ops' and 'skips' ({error})") from None

    def build(self, arch: MacroArchitecture, num_classes: int, in_chans: int, C: int = 16) -> nn.Module:
        """``MacroNetwork`` of ``C`` channels; its depth is the space's ``layers``."""
        return MacroNetwork(arch, C=C, num_classes=num_classes, in_chans=in_chans)

    def shared_child(self, num_classes: int, in_chans: int, C: int = 36, layers: int | None = None, **options: Any
                     ) -> MacroNetwork:
        """``MacroNetwork(None)`` of ``C`` channels (the authors' 36 by default) with the space's layers, which
        ``layers`` may repeat but not change; ``options``: ``dropout``."""
        unknown = sorted(set(options) - {"dropout"})
        if unknown:
            raise ConfigError(f"the enas_macro shared child does not take {', '.join(unknown)}; it takes C, layers "
                              f"and dropout")
        if layers is not None and layers != self.layers:
            raise ConfigError(f"layers={layers}: the enas_macro space has {self.layers} layers, and so has its shared "
                              f"child; create the space with layers={layers}")
        return MacroNetwork(None, C, self.layers, num_classes, in_chans, **options)
