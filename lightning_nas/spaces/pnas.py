"""The PNAS cell space: cells of b blocks, grown one block at a time.

A block computes ``op1(input1) + op2(input2)``. Inputs use the Genotype's numbering: 0 = c_{k-2}, 1 = c_{k-1},
2 + j = block j of the same cell. The cell output concatenates all blocks; one cell type serves as the normal cell and
(with stride 2 on the ops that read the cell inputs) as the reduction cell.

Cells are plain frozen data kept in a canonical form, so two cells are equal exactly when they are the same
architecture up to the two symmetries of the space: swapping the two halves of a block (addition commutes), and
renumbering blocks (the output concat then only permutes channels, which the next cell's 1x1 conv absorbs).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

from lightning_nas.errors import ConfigError, check
from lightning_nas.genotypes import Genotype
from lightning_nas.ops import OPS, PNAS_OPS, check_op_name
from lightning_nas.spaces.base import register_space
from lightning_nas.spaces.darts import GenotypeSpace

NUM_CELL_INPUTS = 2
OP_ALIASES = {"skip_connect": "identity"}
"""Registry names that are the same op as a PNAS op (DARTS-style genotypes call the identity skip_connect)."""

Half = tuple[int, str]


class Block(NamedTuple):
    """One block: ``op1(input1) + op2(input2)``; its tokens for the predictor, in this order."""

    input1: int
    input2: int
    op1: str
    op2: str

    def halves(self) -> tuple[Half, Half]:
        return (self.input1, self.op1), (self.input2, self.op2)


def _block(first: Half, second: Half) -> Block:
    (input1, op1), (input2, op2) = sorted((first, second))
    return Block(input1, input2, op1, op2)


def _canonical(blocks: tuple[Block, ...]) -> tuple[Block, ...]:
    """The lexicographically smallest renumbering of ``blocks``, halves sorted within each block.

    Blocks are first ordered by (depth, structure key), where the key is the block's unfolded expression tree; an
    isomorphism maps blocks onto blocks of equal key and depth, so only blocks with equal keys need their orders
    tried. That is rare and small (at most B! for B identical blocks), keeping canonicalisation exact and cheap.
    """
    keys: list[tuple] = []
    depths: list[int] = []
    for block in blocks:
        halves = [((0, i) if i < NUM_CELL_INPUTS else (1, keys[i - NUM_CELL_INPUTS]), op) for i, op in block.halves()]
        keys.append(tuple(sorted(halves)))
        depths.append(1 + max((depths[i - NUM_CELL_INPUTS] for i, _ in block.halves() if i >= NUM_CELL_INPUTS), default=0))
    ranked = sorted(range(len(blocks)), key=lambda j: (depths[j], keys[j]))
    groups = [list(group) for _, group in itertools.groupby(ranked, key=lambda j: (depths[j], keys[j]))]

    def renumber(order: Sequence[int]) -> tuple[Block, ...]:
        position = {old: new for new, old in enumerate(order)}
        move = lambda i: i if i < NUM_CELL_INPUTS else NUM_CELL_INPUTS + position[i - NUM_CELL_INPUTS]  # noqa: E731
        return tuple(_block(*((move(i), op) for i, op in blocks[old].halves())) for old in order)

    if all(len(group) == 1 for group in groups):
        return renumber(ranked)
    orders = itertools.product(*(itertools.permutations(group) for group in groups))
    return min(renumber([j for group in order for j in group]) for order in orders)


@dataclass(frozen=True)
class PNASCell:
    """A cell of b blocks in canonical form (the empty cell is the root every one-block cell expands from)."""

    blocks: tuple[Block, ...] = ()

    def __post_init__(self) -> None:
        blocks = tuple(Block(int(i1), int(i2), str(o1), str(o2)) for i1, i2, o1, o2 in self.blocks)
        for position, block in enumerate(blocks):
            for index, op in block.halves():
                check_op_name(op)
                if not 0 <= index < NUM_CELL_INPUTS + position:
                    raise ConfigError(
                        f"block {position} reads input {index}, but it may only read 0..{NUM_CELL_INPUTS + position - 1} "
                        f"(0 = c_{{k-2}}, 1 = c_{{k-1}}, 2 + j = block j)"
                    )
        object.__setattr__(self, "blocks", _canonical(blocks))

    def __len__(self) -> int:
        return len(self.blocks)

    def ops(self) -> set[str]:
        return {op for block in self.blocks for _, op in block.halves()}

    def to_list(self) -> list[list]:
        """``[[input1, input2, op1, op2], ...]``: plain JSON."""
        return [list(block) for block in self.blocks]

    @classmethod
    def from_list(cls, blocks: Iterable[Sequence]) -> PNASCell:
        return cls(tuple(Block(*block) for block in blocks))

    def key(self) -> str:
        """A short stable text form, e.g. ``0:sep_conv_3x3+1:identity | ...``, used for seeds and file names."""
        return " | ".join(f"{b.input1}:{b.op1}+{b.input2}:{b.op2}" for b in self.blocks)

    def to_genotype(self) -> Genotype:
        """The Genotype stacked by the final networks: normal = reduce, output = concat of all blocks."""
        if not self.blocks:
            raise ValueError("the empty cell has no genotype; expand it to one-block cells first")
        edges = tuple(half[::-1] for block in self.blocks for half in block.halves())
        concat = tuple(range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + len(self.blocks)))
        return Genotype(normal=edges, normal_concat=concat, reduce=edges, reduce_concat=concat)

    @classmethod
    def from_genotype(cls, genotype: Genotype, ops: Sequence[str] = PNAS_OPS) -> PNASCell:
        """The cell of a PNAS-style genotype; raises ValueError if it is not in the space spanned by ``ops``."""
        if genotype.normal != genotype.reduce or genotype.normal_concat != genotype.reduce_concat:
            raise ConfigError("a PNAS cell is one cell type: the genotype's normal and reduce cells must be equal")
        nodes = tuple(range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + genotype.num_nodes("normal")))
        if tuple(sorted(genotype.normal_concat)) != nodes:
            raise ConfigError(f"a PNAS cell concatenates all its blocks {list(nodes)}, got {list(genotype.normal_concat)}")
        edges = [(OP_ALIASES.get(op, op), index) for op, index in genotype.normal]
        outside = sorted({op for op, _ in edges} - set(ops))
        if outside:
            raise ConfigError(f"ops {outside} are not in this PNAS space; its ops are {list(ops)}")
        return cls(tuple(_block((i1, o1), (i2, o2)) for (o1, i1), (o2, i2) in zip(edges[::2], edges[1::2])))


def expand(cell: PNASCell, ops: Sequence[str] = PNAS_OPS) -> list[PNASCell]:
    """Every distinct cell made of ``cell`` plus one more block, in a fixed order (first occurrence)."""
    halves = [(index, op) for index in range(NUM_CELL_INPUTS + len(cell)) for op in ops]
    children = (
        PNASCell(cell.blocks + (_block(first, second),))
        for a, first in enumerate(halves)
        for second in halves[a:]
    )
    return list(dict.fromkeys(children))


def one_block_cells(ops: Sequence[str] = PNAS_OPS) -> list[PNASCell]:
    """All distinct one-block cells: unordered pairs of (input, op) halves, (2 |ops|)(2 |ops| + 1) / 2 of them."""
    return expand(PNASCell(), ops)


def encode(cell: PNASCell, ops: Sequence[str] = PNAS_OPS) -> list[int]:
    """Predictor tokens: (input1, input2, op1, op2) per block, ops as indices into ``ops``."""
    index = {op: i for i, op in enumerate(ops)}
    try:
        return [t for b in cell.blocks for t in (b.input1, b.input2, index[b.op1], index[b.op2])]
    except KeyError as error:
        raise ValueError(f"op {error.args[0]!r} of cell {cell.key()} is not in the ops {list(ops)}") from None


def shared_edges(parent: PNASCell, child: PNASCell) -> dict[int, int]:
    """Genotype edge positions of ``child`` mapped to the edge of ``parent`` that computes the same thing.

    Edge ``2 j + h`` is half ``h`` of block ``j``. Finds an embedding of the parent's blocks into the child's (the
    child's blocks may be renumbered by canonicalisation); raises ValueError if ``child`` does not extend ``parent``.
    """
    for image in itertools.permutations(range(len(child)), len(parent)):
        move = lambda i: i if i < NUM_CELL_INPUTS else NUM_CELL_INPUTS + image[i - NUM_CELL_INPUTS]  # noqa: E731
        edges: dict[int, int] = {}
        for j, block in enumerate(parent.blocks):
            moved = [(move(i), op) for i, op in block.halves()]
            target = list(child.blocks[image[j]].halves())
            if sorted(moved) != sorted(target):
                break
            first = target.index(moved[0])
            edges[2 * image[j] + first] = 2 * j
            edges[2 * image[j] + 1 - first] = 2 * j + 1
        else:
            return edges
    raise ValueError(f"cell {child.key()} does not extend cell {parent.key()}")


def random_cell(rng: random.Random, blocks: int, ops: Sequence[str] = PNAS_OPS) -> PNASCell:
    """A cell of ``blocks`` blocks drawn uniformly block by block (the PNAS paper's random-search baseline): each half
    of block j reads any cell input or earlier block through any op."""
    cell = PNASCell()
    for j in range(blocks):
        halves = [(rng.randrange(NUM_CELL_INPUTS + j), rng.choice(ops)) for _ in range(2)]
        cell = PNASCell(cell.blocks + (_block(*halves),))
    return cell


class PNASGrowth:
    """PNAS's progressive growth (``Growth``) of cells of 1..``blocks`` blocks over ``ops``, one block a step: the
    predictor reads a block as (input1, input2, op1, op2), inputs and ops each from an embedding table of their own (the
    paper's shared embeddings of inputs and of ops); a child inherits the weights of the ops of every block it shares
    with its parent (``shared_edges``)."""

    step: tuple[str, ...] = ("inputs", "inputs", "ops", "ops")

    def __init__(self, blocks: int, ops: Sequence[str]) -> None:
        self.levels, self.ops = blocks, tuple(ops)
        self.vocabularies = {"inputs": NUM_CELL_INPUTS + blocks - 1, "ops": len(self.ops)}
        self.settings: dict[str, Any] = {"ops": list(self.ops)}
        """The ops alone: a PNAS results file is bound to them (and the saved predictors to them and B) since before
        the search took a space, so results of earlier searches resume."""

    def first(self) -> list[PNASCell]:
        return one_block_cells(self.ops)

    def children(self, grown: PNASCell) -> list[PNASCell]:
        return expand(grown, self.ops)

    def key(self, grown: PNASCell) -> str:
        return grown.key()

    def to_data(self, grown: PNASCell) -> list[list]:
        return grown.to_list()

    def from_data(self, data: Iterable[Sequence]) -> PNASCell:
        return PNASCell.from_list(data)

    def architecture(self, grown: PNASCell) -> Genotype:
        return grown.to_genotype()

    def tokens(self, grown: PNASCell) -> list[int]:
        return encode(grown, self.ops)

    def inheritance(self, parent: PNASCell, child: PNASCell, N: int) -> dict[str, str | None]:
        """Every cell's op modules (3N cells, normal and reduction alike) → the parent's op computing the same edge;
        the new block's ops start fresh."""
        edges = shared_edges(parent, child)
        return {f"cells.{i}.ops.{e}": (f"cells.{i}.ops.{edges[e]}" if e in edges else None)
                for i in range(3 * N) for e in range(2 * len(child))}


@register_space
class PNASSpace(GenotypeSpace):
    """PNAS cells of ``nodes`` blocks (the paper's B; called nodes as in the other cell spaces): per block two
    (input, op) halves; one cell type serves as normal and reduction cell. Architectures are the cells' Genotypes, in
    canonical form."""

    name = "pnas"

    def __init__(self, nodes: int = 5, ops: Sequence[str] = PNAS_OPS) -> None:
        if nodes < 1:
            raise ConfigError(f"nodes={nodes}: a PNAS cell needs at least 1 block")
        unknown = [op for op in ops if op not in OPS]
        check(not unknown, f"unknown ops {unknown} in ops; valid ops are: {', '.join(sorted(OPS))}")
        check(len(set(ops)) == len(ops), f"ops must be distinct, got {list(ops)}")
        self.blocks, self.ops = nodes, tuple(ops)

    def choices(self) -> tuple[int, ...]:
        return tuple(n for j in range(self.blocks) for n in (NUM_CELL_INPUTS + j,) * 2 + (len(self.ops),) * 2)

    def decisions(self, arch: Genotype) -> tuple[int, ...]:
        cell = PNASCell.from_genotype(arch, self.ops)
        if len(cell) != self.blocks:
            raise ConfigError(f"the cell has {len(cell)} blocks; this PNAS space has {self.blocks}")
        return tuple(d for b in cell.blocks for d in (b.input1, b.input2, self.ops.index(b.op1), self.ops.index(b.op2)))

    def decode(self, decisions: Sequence[int]) -> Genotype:
        d = decisions
        blocks = tuple(_block((d[k], self.ops[d[k + 2]]), (d[k + 1], self.ops[d[k + 3]])) for k in range(0, len(d), 4))
        return PNASCell(blocks).to_genotype()

    def draw(self, rng: random.Random) -> Genotype:
        return random_cell(rng, self.blocks, self.ops).to_genotype()

    def progressive(self) -> PNASGrowth:
        return PNASGrowth(self.blocks, self.ops)
