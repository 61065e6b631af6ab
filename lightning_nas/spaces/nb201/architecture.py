"""A NAS-Bench-201 architecture (Dong & Yang, ICLR 2020): one op of NB201_OPS on each of the cell's 6 edges, as
plain frozen data with the benchmark's text form.

An architecture is written the benchmark's way, node by node, each edge as ``op~input``:
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from lightning_nas.errors import ConfigError
from lightning_nas.files import read_text, write_atomic
from lightning_nas.ops import NB201_OPS
from lightning_nas.spaces.nb201.cell import NB201_EDGES, NB201_NODES


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


def resolve_nb201(genotype: NB201Architecture | str | os.PathLike) -> NB201Architecture:
    """An NB201Architecture from itself, its string form, or a file holding the string form (or the JSON a search
    writes, ``{"arch": "|...|"}``)."""
    if isinstance(genotype, NB201Architecture):
        return genotype
    if not isinstance(genotype, (str, os.PathLike)):
        raise ConfigError(f"NAS-Bench-201 genotype {genotype!r}: give a cell string |op~0|+|...|, a file holding one, "
                          f"or an NB201Architecture")
    text = os.fspath(genotype)
    if not text.lstrip().startswith("|"):
        content = read_text(text)
        if content is None:
            raise ConfigError(f"NAS-Bench-201 genotype {text!r} is neither a cell string |op~0|+|...| nor a file")
        return NB201Architecture.from_json(content)
    return NB201Architecture.from_string(text)
