import copy

import pytest
import torch

from lightning_nas.ops import DARTS_PRIMITIVES
from lightning_nas.ops.recompute import _ReLUKeepingInput
from lightning_nas.spaces.darts import SearchCell, SearchNetwork, derive_cell, num_edges
from lightning_nas.spaces.darts.supernet import _ConcatChannels
from lightning_nas.spaces.oneshot import MixedOp


def test_search_network_has_the_published_weight_count_and_alpha_shapes():
    network = SearchNetwork(C=16, layers=8, num_classes=10)
    assert sum(p.numel() for p in network.weight_parameters()) == 1_930_618
    assert [tuple(a.shape) for a in network.arch_parameters()] == [(14, 8), (14, 8)]
    assert len(network.weight_parameters()) + 2 == len(list(network.parameters()))


def test_search_cell_concatenates_its_nodes_and_reduces():
    cell = SearchCell(6, 6, 4, reduction=True, reduction_prev=False, nodes=3, primitives=("none", "skip_connect"))
    assert len(cell.edges) == num_edges(3) == 9
    out = cell(torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8), torch.full((9, 2), 0.5))
    assert out.shape == (2, 12, 4, 4)


def test_configurable_op_list_and_clear_errors():
    network = SearchNetwork(C=4, layers=3, num_classes=3, in_chans=1, nodes=2, primitives=("skip_connect", "avg_pool_3x3"))
    assert network.alpha_normal.shape == (5, 2)
    assert network(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert {op for op, _ in network.genotype().normal} <= {"skip_connect", "avg_pool_3x3"}
    with pytest.raises(ValueError, match="unknown op 'conv_9x9'"):
        SearchNetwork(primitives=("none", "conv_9x9"))
    with pytest.raises(ValueError, match="other than 'none'"):
        MixedOp(4, 1, primitives=("none",))


def test_derivation_uses_softmax_per_edge_not_raw_alpha():
    # One node (2 edges: inputs 0 and 1) plus a second node with 3 inputs; ops: none, max_pool, sep_conv.
    primitives = ("none", "max_pool_3x3", "sep_conv_3x3")
    alpha = torch.tensor(
        [
            [0.0, 3.0, 3.0],  # input 0: raw max 3.0, but softmax splits it: 0.49
            [-5.0, 2.0, -5.0],  # input 1: raw max 2.0, softmax 0.998
            [0.0, 3.0, 3.0],  # node 3 <- input 0: softmax 0.49 (tie between ops -> the earlier, max_pool)
            [-5.0, 2.0, -5.0],  # node 3 <- input 1: softmax 0.998
            [10.0, 1.0, 2.5],  # node 3 <- node 2: none dominates; strongest non-none softmax ~5.5e-4
        ]
    )
    weights = torch.softmax(alpha, dim=-1)
    assert derive_cell(weights, primitives, nodes=2) == [
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
    ]
    # The raw-α rule of popular ports would keep node 2's inputs in the other order and pick node 3's none-dominated
    # edge (raw 2.5 > 2.0): the two rules really differ on this α.
    assert derive_cell(alpha, primitives, nodes=2)[2:] != derive_cell(weights, primitives, nodes=2)[2:]


def test_network_genotype_is_derived_from_its_alpha():
    network = SearchNetwork(C=4, layers=3, num_classes=3, in_chans=1)
    with torch.no_grad():
        network.alpha_normal.zero_()
        network.alpha_normal[:, DARTS_PRIMITIVES.index("none")] = 5.0
        for first in (0, 2, 5, 9):  # every node's edge from c_{k-1} prefers sep_conv_3x3, from c_{k-2} dil_conv_5x5
            network.alpha_normal[first + 1, DARTS_PRIMITIVES.index("sep_conv_3x3")] = 4.0
            network.alpha_normal[first, DARTS_PRIMITIVES.index("dil_conv_5x5")] = 3.0
    genotype = network.genotype()
    assert genotype.normal == (("sep_conv_3x3", 1), ("dil_conv_5x5", 0)) * 4
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)


def test_partial_channels_add_edge_normalisation_to_the_architecture():
    torch.manual_seed(0)
    network = SearchNetwork(C=8, layers=3, num_classes=3, in_chans=1, nodes=3, partial_channels=4)
    assert [tuple(a.shape) for a in network.arch_parameters()] == [(9, 8), (9, 8), (9,), (9,)]
    with torch.no_grad():
        network.beta_normal.copy_(torch.arange(9.0))
    edge_normal, _ = network.edge_weights()
    # softmax over each node's inputs: node 0 reads edges 0-1, node 1 edges 2-4, node 2 edges 5-8
    for edges in (slice(0, 2), slice(2, 5), slice(5, 9)):
        torch.testing.assert_close(edge_normal[edges], torch.softmax(torch.arange(9.0)[edges], 0))
    network(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in network.arch_parameters())
    # Derivation weighs each edge's ops by its edge weight: the last inputs of every node win.
    assert [i for _, i in network.genotype().normal] == [1, 0, 2, 1, 3, 2]
    assert network(torch.randn(2, 1, 8, 8), alpha_grad=False).requires_grad


def test_skip_connect_cap_replaces_the_weakest_skip_edges_as_p_darts_does():
    primitives = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
    weights = torch.tensor(
        [  # none, max_pool, skip, sep_conv
            [0.1, 0.0, 0.60, 0.30],  # node 2 <- c_{k-2}
            [0.1, 0.0, 0.50, 0.40],  # node 2 <- c_{k-1}
            [0.1, 0.0, 0.48, 0.10],  # node 3 <- c_{k-2}
            [0.1, 0.2, 0.45, 0.00],  # node 3 <- c_{k-1}
            [0.1, 0.0, 0.00, 0.50],  # node 3 <- node 2
        ]
    )
    plain = [("skip_connect", 0), ("skip_connect", 1), ("sep_conv_3x3", 2), ("skip_connect", 0)]
    assert derive_cell(weights, primitives, nodes=2) == derive_cell(weights, primitives, 2, max_skip_connect=3) == plain
    # Cap 2: node 3's c_{k-2} edge (skip 0.48, the weakest) loses skip_connect and drops below the c_{k-1} edge,
    # whose skip (0.45) is then the weakest and falls back to max_pool; node 2's stronger skips stay.
    assert derive_cell(weights, primitives, 2, max_skip_connect=2) == [
        ("skip_connect", 0), ("skip_connect", 1), ("sep_conv_3x3", 2), ("max_pool_3x3", 1)
    ]
    # Cap 0: every edge takes its best other op; node 2 now ranks c_{k-1} (sep 0.4) above c_{k-2} (sep 0.3).
    assert derive_cell(weights, primitives, 2, max_skip_connect=0) == [
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 2), ("max_pool_3x3", 1)
    ]
    with pytest.raises(ValueError, match="an op other than none and skip_connect"):
        derive_cell(weights[:, [0, 2]], ("none", "skip_connect"), 2, max_skip_connect=0)


def test_network_caps_skip_connect_in_the_normal_cell_only():
    network = SearchNetwork(C=4, layers=3, num_classes=3, in_chans=1)
    with torch.no_grad():
        for alpha in network.arch_parameters():
            alpha.zero_()
            alpha[:, DARTS_PRIMITIVES.index("skip_connect")] = 3.0
            alpha[:, DARTS_PRIMITIVES.index("sep_conv_3x3")] = 1.0
    assert [op for op, _ in network.genotype().normal].count("skip_connect") == 8
    capped = network.genotype(max_skip_connect=2)
    assert [op for op, _ in capped.normal].count("skip_connect") == 2
    assert set(op for op, _ in capped.normal) == {"skip_connect", "sep_conv_3x3"}
    assert capped.reduce == network.genotype().reduce


def test_the_cell_output_hands_each_node_a_dense_gradient_in_its_memory_format():
    """A channel slice of the output gradient is strided (and the classifier's pooling may hand back NCHW): each node
    gets the same values, dense, in its own layout, and a second derivative goes through."""
    channels_last = torch.channels_last
    nodes = [torch.randn(2, 3, 4, 4, dtype=torch.float64).contiguous(memory_format=channels_last) for _ in range(3)]
    nodes.append(torch.randn(2, 3, 4, 4, dtype=torch.float64))  # NCHW
    nodes = [node.requires_grad_() for node in nodes]
    grad = torch.randn(2, 12, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    ours = torch.autograd.grad(_ConcatChannels.apply(*nodes), nodes, grad)
    theirs = torch.autograd.grad(torch.cat(nodes, dim=1), nodes, grad)
    torch.testing.assert_close(ours, theirs)
    assert not any(g.is_contiguous(memory_format=torch.channels_last) for g in theirs)  # the control: strided
    assert [g.is_contiguous(memory_format=torch.channels_last) for g in ours] == [True, True, True, False]
    assert ours[-1].is_contiguous()
    assert torch.autograd.gradgradcheck(lambda *xs: _ConcatChannels.apply(*xs).square(), nodes)


def edge_by_edge(cell: SearchCell, s0, s1, weights):
    """The cell as each mixed op on its own computes it: nothing shared between edges."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    edges = iter(zip(cell.edges, weights))
    for node in range(cell.nodes):
        states.append(sum(edge(states[i], w) for i, (edge, w) in zip(range(2 + node), edges)))
    return torch.cat(states[2:], dim=1)


@pytest.mark.parametrize("reduction", [False, True])
@pytest.mark.parametrize("recompute_ops", [False, True])
def test_edges_reading_one_input_share_its_relu_and_pooling_with_the_same_outputs_gradients_and_statistics(
    reduction, recompute_ops, monkeypatch
):
    torch.manual_seed(0)
    cell = SearchCell(6, 6, 4, reduction, reduction_prev=False, recompute_ops=recompute_ops).double()
    reference = copy.deepcopy(cell)
    pools, relus = [], []
    for module in cell.modules():
        if isinstance(module, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            module.register_forward_hook(lambda *args: pools.append(1))
    shared_relu = _ReLUKeepingInput.apply
    monkeypatch.setattr(_ReLUKeepingInput, "apply", lambda x: relus.append(1) or shared_relu(x))
    s0, s1 = (torch.randn(3, 6, 8, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    alpha = torch.randn(num_edges(4), len(DARTS_PRIMITIVES), dtype=torch.float64, requires_grad=True)
    out = cell(s0, s1, alpha.softmax(-1))
    # once per state read (2 cell inputs, 3 nodes): each pooling op, and the ReLU the conv ops start with
    assert (len(pools), len(relus)) == (2 * 5, 5)
    expected = edge_by_edge(reference, s0, s1, alpha.softmax(-1))
    assert len(relus) == 5 + num_edges(4)  # the control: one per edge
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, [s0, s1, alpha, *cell.parameters()], grad),
                               torch.autograd.grad(expected, [s0, s1, alpha, *reference.parameters()], grad))
    for a, b in zip(cell.buffers(), reference.buffers()):  # every edge's BN updated its own running statistics
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    for a, b in zip(cell.buffers(), reference.buffers()):  # in eval mode each edge's BN uses its own statistics
        if a.is_floating_point():
            a.uniform_(0.5, 2.0)
            b.copy_(a)
    cell.eval(), reference.eval()
    torch.testing.assert_close(cell(s0, s1, alpha.softmax(-1)), edge_by_edge(reference, s0, s1, alpha.softmax(-1)))


def gradients(network, saved_activation_bytes, *args, **kwargs):
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    loss, saved = saved_activation_bytes(lambda: torch.nn.functional.cross_entropy(network(x, *args, **kwargs), y))
    loss.backward()
    return [p.grad for p in network.parameters()], saved


def test_weights_as_constants_give_the_same_alpha_gradient_without_weight_gradients_or_conv_inputs(
    saved_activation_bytes,
):
    torch.manual_seed(0)
    network = SearchNetwork(C=4, layers=3)
    frozen = copy.deepcopy(network)
    full, full_bytes = gradients(network, saved_activation_bytes)
    _, alpha_only_bytes = gradients(frozen, saved_activation_bytes, weight_grad=False)
    for a, b in zip(network.arch_parameters(), frozen.arch_parameters()):
        torch.testing.assert_close(b.grad, a.grad)
    assert all(p.grad is None and p.requires_grad for p in frozen.weight_parameters())
    assert sum(g is not None for g in full) == len(full)
    assert alpha_only_bytes < 0.9 * full_bytes  # the convs' inputs are not kept


def test_checkpointed_cells_give_the_same_gradients_and_statistics_with_fewer_saved_activations(saved_activation_bytes):
    torch.manual_seed(0)
    network = SearchNetwork(C=4, layers=3)
    checkpointed = copy.deepcopy(network)
    checkpointed.checkpoint_cells = 3
    plain_grads, plain_bytes = gradients(network, saved_activation_bytes)
    checkpointed_grads, checkpointed_bytes = gradients(checkpointed, saved_activation_bytes)
    torch.testing.assert_close(checkpointed_grads, plain_grads)
    for a, b in zip(network.buffers(), checkpointed.buffers()):  # BN statistics updated once, not twice
        torch.testing.assert_close(b, a)
    assert checkpointed_bytes < 0.5 * plain_bytes
    for p in checkpointed.parameters():
        p.grad = None
    # the α step: recomputed with the weights frozen, as recorded
    gradients(checkpointed, saved_activation_bytes, weight_grad=False)
    for a, b in zip(network.arch_parameters(), checkpointed.arch_parameters()):
        torch.testing.assert_close(b.grad, a.grad)
    with pytest.raises(ValueError, match="checkpoint_cells must be between 0 and the 3 cells, got 4"):
        SearchNetwork(C=4, layers=3, checkpoint_cells=4)


@pytest.mark.parametrize("step", [{}, {"weight_grad": False}, {"alpha_grad": False}], ids=["full", "alpha", "w"])
@pytest.mark.parametrize("checkpoint_cells", [0, 3])
def test_recomputed_ops_give_the_same_gradients_and_statistics_with_fewer_saved_activations(
    step, checkpoint_cells, saved_activation_bytes
):
    torch.manual_seed(0)
    network = SearchNetwork(C=4, layers=3)
    lean = SearchNetwork(C=4, layers=3, checkpoint_cells=checkpoint_cells, recompute_ops=True)
    lean.load_state_dict(network.state_dict())
    plain_grads, plain_bytes = gradients(network, saved_activation_bytes, **step)
    lean_grads, lean_bytes = gradients(lean, saved_activation_bytes, **step)
    assert [g is None for g in lean_grads] == [g is None for g in plain_grads]
    torch.testing.assert_close([g for g in lean_grads if g is not None], [g for g in plain_grads if g is not None])
    for a, b in zip(network.buffers(), lean.buffers()):  # BN statistics updated once, as without recomputation
        torch.testing.assert_close(b, a)
    # recomputed, the α step keeps about 0.64 of the plain one's activations (which keep each op's BN input only)
    assert lean_bytes < (0.1 if checkpoint_cells else 0.7 if step == {"weight_grad": False} else 0.6) * plain_bytes
