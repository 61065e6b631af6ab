"""The Genotype: a discrete cell architecture, as found by a search and stacked by a final network.

A cell reads two inputs, c_{k-2} (index 0) and c_{k-1} (index 1), and computes intermediate nodes 2, 3, ...; node i is
the sum of two edges ``(op, input)`` with ``input < i``. The cell output concatenates the nodes listed in ``concat``.
A genotype holds one normal and one reduction cell. It is plain data: it converts to and from dicts, JSON and YAML so
that it survives Lightning hparams, checkpoints loaded with ``weights_only=True`` and command lines.
"""

from __future__ import annotations

import json
import operator
import os
import reprlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Union

import fsspec
import yaml

from lightning_nas.errors import ConfigError
from lightning_nas.files import join, read_text, write_atomic
from lightning_nas.ops import OPS

Edge = tuple[str, int]
GenotypeLike = Union["Genotype", dict, str, os.PathLike]

EDGES_PER_NODE = 2
CELL_TYPES = ("normal", "reduce")


class GenotypeError(ConfigError):
    """A genotype that does not describe a valid cell; the message names the bad entry."""


def _integer(value: Any, where: str) -> int:
    """``value`` as an int, refusing what ``int()`` would silently round or parse (1.7, "1")."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            return operator.index(value)  # numpy integers
        except TypeError:
            raise GenotypeError(
                f"{where} {value!r} is not a whole number; write node indices as integers (0 = c_{{k-2}}, "
                f"1 = c_{{k-1}}, 2.. = the cell's nodes)"
            ) from None
    return value


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for cell in CELL_TYPES:
            edges = tuple(
                (str(op), _integer(index, f"{cell}[{position}] input"))
                for position, (op, index) in enumerate(getattr(self, cell))
            )
            object.__setattr__(self, cell, edges)
            concat = tuple(_integer(i, f"{cell}_concat") for i in getattr(self, f"{cell}_concat"))
            object.__setattr__(self, f"{cell}_concat", concat)
        self.validate()

    def validate(self) -> None:
        """Raise GenotypeError naming the first bad entry: unknown op, input out of range, missing concat node."""
        for cell in CELL_TYPES:
            edges: tuple[Edge, ...] = getattr(self, cell)
            if not edges or len(edges) % EDGES_PER_NODE:
                raise GenotypeError(
                    f"{cell}: expected {EDGES_PER_NODE} edges per node, got {len(edges)} edges in all"
                )
            for position, (op, index) in enumerate(edges):
                node = 2 + position // EDGES_PER_NODE
                if op not in OPS:
                    raise GenotypeError(
                        f"{cell}[{position}] (node {node}): unknown op {op!r}; valid ops are: {', '.join(sorted(OPS))}"
                    )
                if not 0 <= index < node:
                    raise GenotypeError(
                        f"{cell}[{position}] (node {node}): input {index} out of range; node {node} may read "
                        f"inputs 0..{node - 1}"
                    )
            concat: tuple[int, ...] = getattr(self, f"{cell}_concat")
            nodes = range(2, 2 + self.num_nodes(cell))
            if not concat or len(set(concat)) != len(concat):
                raise GenotypeError(f"{cell}_concat: needs distinct node indices, got {list(concat)}")
            for index in concat:
                if index not in nodes:
                    raise GenotypeError(
                        f"{cell}_concat: node {index} does not exist; this cell has nodes {nodes.start}..{nodes.stop - 1}"
                    )

    def num_nodes(self, cell: str) -> int:
        """Number of intermediate nodes of the ``normal`` or ``reduce`` cell."""
        return len(getattr(self, cell)) // EDGES_PER_NODE

    def to_dict(self) -> dict[str, list]:
        """Plain lists and ints only, safe for hparams, YAML and ``torch.load(weights_only=True)``."""
        return {
            "normal": [[op, index] for op, index in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, index] for op, index in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        if not isinstance(data, dict):
            shown = "null" if data is None else f"{reprlib.repr(data)} ({type(data).__name__})"
            raise GenotypeError(
                f"a genotype must be an object with normal, normal_concat, reduce and reduce_concat; got {shown}"
            )
        if {"ops", "skips"} <= set(data):
            raise GenotypeError("this is an ENAS macro architecture (ops and skips of a whole network), not a cell "
                                "genotype; README's 'Retrain an ENAS macro architecture' says how to train it")
        keys = ("normal", "normal_concat", "reduce", "reduce_concat")
        if missing := [key for key in keys if key not in data]:
            found = f"it lacks {', '.join(missing)}" if len(missing) < len(keys) else \
                f"it has {', '.join(map(str, data)) or 'no keys'}"
            raise GenotypeError(f"a genotype needs normal, normal_concat, reduce and reduce_concat; {found}")
        try:
            return cls(
                normal=tuple((op, index) for op, index in data["normal"]),
                normal_concat=tuple(data["normal_concat"]),
                reduce=tuple((op, index) for op, index in data["reduce"]),
                reduce_concat=tuple(data["reduce_concat"]),
            )
        except (TypeError, ValueError) as error:
            if isinstance(error, GenotypeError):
                raise
            raise GenotypeError(f"malformed genotype: edges must be [op, input] pairs and concat a list of ints ({error})") from None

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise GenotypeError(f"genotype is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), default_flow_style=None, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Genotype:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise GenotypeError(f"genotype is not valid YAML: {error}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> str:
        """Write as JSON atomically (temporary file, then rename), so a crash never leaves half a genotype; ``path``
        may be a URL (``s3://``, ``memory://``)."""
        return write_atomic(path, self.to_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Genotype:
        """Read a genotype file (JSON, or YAML for .yaml/.yml; a path or URL); errors name the file."""
        path = str(path)
        filesystem = fsspec.core.url_to_fs(path)[0]
        if filesystem.isdir(path):
            example = join(path, "genotype.json")
            raise GenotypeError(f"genotype file {path!r} is a directory; give a file in it, e.g. {example!r}")
        try:
            text = read_text(path)
        except UnicodeDecodeError as error:
            raise GenotypeError(f"genotype file {path!r} is not text (byte {error.object[error.start]:#04x} at "
                                f"position {error.start}); give the genotype.json a search wrote") from None
        if text is None:
            raise GenotypeError(f"genotype file {path!r} does not exist")
        try:
            return cls.from_yaml(text) if path.endswith((".yaml", ".yml")) else cls.from_json(text)
        except GenotypeError as error:
            raise GenotypeError(f"{path}: {error}") from None

    def describe(self, cells: tuple[str, ...] = CELL_TYPES) -> str:
        """Readable text form: one line per node, e.g. ``node 2 = sep_conv_3x3(c_{k-2}) + skip_connect(c_{k-1})``."""
        lines = []
        for cell in cells:
            concat = getattr(self, f"{cell}_concat")
            lines.append(f"{cell} cell (output = concat of nodes {', '.join(map(str, concat))}):")
            edges = getattr(self, cell)
            for node in range(self.num_nodes(cell)):
                pair = edges[EDGES_PER_NODE * node : EDGES_PER_NODE * (node + 1)]
                terms = " + ".join(f"{op}({input_name(index)})" for op, index in pair)
                lines.append(f"  node {node + 2} = {terms}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def input_name(index: int) -> str:
    """Paper notation of a cell input: c_{k-2}, c_{k-1}, or the intermediate node number."""
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, f"node {index}")


def published_genotypes() -> dict[str, Genotype]:
    """The published cells shipped with the package (DARTS_V1, DARTS_V2, NASNet, AmoebaNet, ENAS, PNASNet)."""
    text = resources.files("lightning_nas.genotypes").joinpath("published.json").read_text()
    return {name: Genotype.from_dict(data) for name, data in json.loads(text).items()}


def resolve_genotype(value: GenotypeLike) -> Genotype:
    """Accept a Genotype, a dict, a published name, a path to a JSON/YAML file or a JSON string."""
    if isinstance(value, Genotype):
        return value
    if isinstance(value, dict):
        return Genotype.from_dict(value)
    text = os.fspath(value)
    published = published_genotypes()
    if text in published:
        return published[text]
    if text.lstrip().startswith("{"):
        return Genotype.from_json(text)
    if text.endswith((".json", ".yaml", ".yml")) or os.path.exists(text):
        return Genotype.load(text)
    raise GenotypeError(
        f"unknown genotype {text!r}: give a published name ({', '.join(published)}), a genotype file path, or a dict"
    )
