"""The ENAS micro child: weights shared per (node, slot, input, op), loose-end output, conversion to a Genotype; the
space's shared child runs along its decisions as along the architecture."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.networks import NetworkCIFAR
from lightning_nas.spaces import create_space
from lightning_nas.spaces.enas_micro import MicroArchitecture, MicroCell, MicroChild

NORMAL = ((0, "sep_conv_3x3"), (1, "identity"), (2, "max_pool_3x3"), (1, "sep_conv_5x5"), (0, "avg_pool_3x3"),
          (3, "sep_conv_3x3"), (2, "identity"), (1, "sep_conv_3x3"), (4, "sep_conv_5x5"), (0, "max_pool_3x3"))
REDUCE = ((1, "avg_pool_3x3"), (1, "sep_conv_3x3"), (0, "sep_conv_5x5"), (2, "identity"), (3, "sep_conv_3x3"),
          (1, "max_pool_3x3"), (4, "avg_pool_3x3"), (0, "sep_conv_3x3"), (2, "sep_conv_5x5"), (5, "identity"))
ARCH = MicroArchitecture(NORMAL, REDUCE)


def edges_with_gradient(child: MicroChild, arch: MicroArchitecture) -> list[set[str]]:
    child.zero_grad(set_to_none=True)
    child(torch.randn(4, 1, 8, 8), arch).sum().backward()
    return [{key.split(".")[0] for key, p in cell.edges.named_parameters() if p.grad is not None} for cell in child.cells]


def expected_edges(edges: tuple) -> set[str]:
    """Keys of the chosen edges that hold weights (pooling and identity have none)."""
    return {MicroCell.edge_key(2 + position // 2, position % 2, index, op)
            for position, (index, op) in enumerate(edges) if op.startswith("sep_conv")}


def test_exactly_the_chosen_edges_train_and_are_shared_across_architectures() -> None:
    torch.manual_seed(0)
    child = MicroChild(C=4, num_layers=3, in_chans=1)
    assert child.reduction_layers == (1, 3) and len(child.cells) == 5
    grads = edges_with_gradient(child, ARCH)
    for layer, cell_grads in enumerate(grads):
        edges = REDUCE if layer in child.reduction_layers else NORMAL
        assert cell_grads == expected_edges(edges)
    # Another architecture that keeps node 3's second edge (slot 1, input 1, sep_conv_5x5) trains that same module.
    other = MicroArchitecture(tuple((0, "identity") if i != 3 else e for i, e in enumerate(NORMAL)), REDUCE)
    module = child.cells[0].edges[MicroCell.edge_key(3, 1, 1, "sep_conv_5x5")]
    assert edges_with_gradient(child, other)[0] == {MicroCell.edge_key(3, 1, 1, "sep_conv_5x5")}
    assert next(module.parameters()).grad is not None


def test_output_concatenates_the_loose_ends_through_their_own_conv_weights() -> None:
    torch.manual_seed(0)
    child = MicroChild(C=4, num_layers=3, in_chans=1)
    assert ARCH.loose_ends("normal") == (5, 6) and ARCH.loose_ends("reduce") == (6,)
    child(torch.randn(2, 1, 8, 8), ARCH).sum().backward()
    weight_grad = child.cells[0].output_weight.grad
    used = [node - 2 for node in ARCH.loose_ends("normal")]
    assert all(weight_grad[i].abs().sum() > 0 for i in used)
    assert all(weight_grad[i].abs().sum() == 0 for i in range(5) if i not in used)


def test_reduction_cells_halve_the_size_and_double_the_channels() -> None:
    child = MicroChild(C=4, num_layers=3, in_chans=1)
    sizes = []
    for cell in child.cells:
        cell.register_forward_hook(lambda module, args, out: sizes.append(tuple(out.shape[1:])))
    child(torch.randn(2, 1, 8, 8), ARCH)
    assert sizes == [(4, 8, 8), (8, 4, 4), (8, 4, 4), (16, 2, 2), (16, 2, 2)]


def test_micro_arch_converts_to_a_genotype_the_final_network_stacks() -> None:
    genotype = ARCH.to_genotype()
    assert genotype.normal[0] == ("sep_conv_3x3", 0) and genotype.normal_concat == (5, 6)
    assert genotype.reduce_concat == (6,)
    network = NetworkCIFAR(genotype, C=4, layers=5, num_classes=10, in_chans=1, auxiliary=False)
    assert network(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_invalid_micro_arch_is_rejected_with_the_node_named() -> None:
    with pytest.raises(ValueError, match="normal node 3: input 3 out of range"):
        MicroArchitecture(NORMAL[:2] + ((3, "identity"),) + NORMAL[3:], REDUCE)
    with pytest.raises(ValueError, match="not an ENAS micro op"):
        MicroArchitecture(NORMAL, (REDUCE[0], (0, "dil_conv_3x3")) + REDUCE[2:])


def test_uniform_arch_draws_every_input_and_op_equally_and_repeats_with_its_generator() -> None:
    archs = [MicroArchitecture.uniform(5, torch.Generator().manual_seed(i)) for i in range(400)]
    assert MicroArchitecture.uniform(5, torch.Generator().manual_seed(7)) == archs[7]
    last_node = [edge for arch in archs for edge in arch.normal[8:]]  # node 6 reads one of 6 inputs
    assert abs(sum(index == 0 for index, _ in last_node) / len(last_node) - 1 / 6) < 0.04
    ops = [op for arch in archs for _, op in arch.reduce]
    assert abs(ops.count("identity") / len(ops) - 1 / 5) < 0.03


def test_the_spaces_shared_child_runs_along_the_decisions_as_along_the_architecture() -> None:
    space = create_space("enas_micro")
    decisions = space.decisions(ARCH.to_genotype())
    assert decisions == ARCH.decisions() and MicroArchitecture.from_decisions(decisions) == ARCH
    assert space.decode(decisions) == ARCH.to_genotype()
    torch.manual_seed(0)
    child = space.shared_child(10, 1, C=4, layers=3)
    torch.manual_seed(0)
    direct = MicroChild(C=4, num_layers=3, in_chans=1)  # what ENAS built before it asked the space
    assert child.state_dict().keys() == direct.state_dict().keys()
    assert sum(p.numel() for p in child.weight_parameters()) == sum(p.numel() for p in direct.parameters())
    x = torch.randn(2, 1, 8, 8)
    child.eval()
    torch.testing.assert_close(child(x, path=decisions), child(x, ARCH), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="the enas_micro shared child does not take width; it takes C, layers"):
        space.shared_child(10, 1, width=3)
