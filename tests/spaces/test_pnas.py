import itertools
import random

import pytest

from lightning_nas.genotypes import published_genotypes
from lightning_nas.networks import NetworkCIFAR
from lightning_nas.ops import PNAS_OPS
from lightning_nas.spaces.pnas import Block, PNASCell, encode, expand, one_block_cells, shared_edges


def brute_force_canonical(blocks: tuple[Block, ...]) -> tuple:
    """Smallest encoding over every valid renumbering of the blocks and every order of each block's halves."""
    best = None
    for order in itertools.permutations(range(len(blocks))):
        position = {old: new for new, old in enumerate(order)}
        move = lambda i: i if i < 2 else 2 + position[i - 2]  # noqa: E731
        encoded = []
        for new, old in enumerate(order):
            halves = sorted((move(i), op) for i, op in blocks[old].halves())
            if any(i >= 2 + new for i, _ in halves):
                break
            encoded.append((halves[0][0], halves[1][0], halves[0][1], halves[1][1]))
        else:
            best = min(best, tuple(encoded)) if best else tuple(encoded)
    return best


def test_one_block_cells_are_the_136_unordered_pairs_of_halves():
    cells = one_block_cells()
    assert len(cells) == len(set(cells)) == 136  # 16 halves (2 inputs x 8 ops): C(16, 2) + 16 identical pairs
    assert PNASCell(((0, 1, "sep_conv_3x3", "identity"),)) == PNASCell(((1, 0, "identity", "sep_conv_3x3"),))
    assert len({tuple(sorted(c.blocks[0].halves())) for c in cells}) == 136


def test_expansion_counts_match_the_count_by_hand():
    cells = one_block_cells()
    # A second block picks an unordered pair of 24 halves (3 inputs x 8 ops): 300 blocks, all giving distinct cells.
    assert {len(expand(cell)) for cell in cells} == {24 * 25 // 2}
    # Distinct two-block cells: the 164 blocks reading block 0 give a rigid cell (136 x 164); blocks reading only the
    # cell inputs give an unordered pair of one-block cells (136 x 137 / 2).
    assert len({child for cell in cells for child in expand(cell)}) == 136 * 164 + 136 * 137 // 2


def test_cells_are_equal_exactly_when_they_are_the_same_architecture():
    """PNASCell equality agrees with a brute-force isomorphism test (smallest encoding over all renumberings)."""
    rng = random.Random(0)
    ops = PNAS_OPS[:2]
    mine, reference = {}, {}
    for n in range(400):
        blocks = []
        for b in range(rng.randint(1, 4)):
            pick = lambda: (rng.randrange(len(blocks) + 2), rng.choice(ops))  # noqa: E731
            (i1, o1), (i2, o2) = pick(), pick()
            blocks.append(Block(i1, i2, o1, o2))
            if rng.random() < 0.3:  # duplicate blocks exercise the tie-breaking
                blocks.append(blocks[-1])
        blocks = tuple(blocks[:4])
        mine.setdefault(PNASCell(blocks), set()).add(n)
        reference.setdefault(brute_force_canonical(blocks), set()).add(n)
    assert sorted(map(sorted, mine.values())) == sorted(map(sorted, reference.values()))
    assert len(mine) < 400  # the sample does contain renumbered copies of the same cell


def test_no_duplicate_children_and_every_child_extends_its_parent():
    parent = PNASCell(((0, 1, "sep_conv_3x3", "max_pool_3x3"), (2, 0, "identity", "identity")))
    children = expand(parent)
    assert len(children) == len(set(children))
    assert len({tuple(map(tuple, c.blocks)) for c in children}) == len(children)
    for child in children[::37]:
        edges = shared_edges(parent, child)
        genotype_child, genotype_parent = child.to_genotype().normal, parent.to_genotype().normal
        assert sorted(edges.values()) == [0, 1, 2, 3]
        for c, p in edges.items():
            assert genotype_child[c][0] == genotype_parent[p][0]
    with pytest.raises(ValueError, match="does not extend"):
        shared_edges(PNASCell(((0, 0, "sep_conv_7x7", "sep_conv_7x7"),)), children[0])


def test_pnasnet5_is_a_member_and_has_about_3_2m_parameters():
    genotype = published_genotypes()["PNASNet"]
    cell = PNASCell.from_genotype(genotype)  # skip_connect is the registry's alias of the PNAS identity
    assert len(cell) == 5 and cell.ops() <= set(PNAS_OPS)
    assert len(encode(cell)) == 20
    assert PNASCell.from_genotype(cell.to_genotype()) == cell
    # N=3, F=48: 9 cells, the two stride-2 cells among them, i.e. layers = 3N = 9, C = F.
    network = NetworkCIFAR(cell.to_genotype(), C=48, layers=9, num_classes=10, auxiliary=False)
    assert sum(cell.reduction for cell in network.cells) == 2
    assert network.num_parameters() == NetworkCIFAR(genotype, C=48, layers=9, auxiliary=False).num_parameters()
    assert network.num_parameters() == pytest.approx(3.2e6, rel=0.02)


def test_bad_cells_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="may only read 0..1"):
        PNASCell(((0, 2, "identity", "identity"),))
    with pytest.raises(ValueError, match="unknown op"):
        PNASCell(((0, 1, "conv_9x9", "identity"),))
    with pytest.raises(ValueError, match="not in this PNAS space"):
        PNASCell.from_genotype(published_genotypes()["PNASNet"], ops=PNAS_OPS[:3])
    with pytest.raises(ValueError, match="normal and reduce"):
        PNASCell.from_genotype(published_genotypes()["DARTS_V2"])
