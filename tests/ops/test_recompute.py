import copy

import pytest
import torch
from torch import nn

from lightning_nas.ops import DARTS_PRIMITIVES, POOLING_OPS, create_op
from lightning_nas.ops.recompute import SharedReLU, add_weighted, normalized_chains, run_op


def search_op(name: str, stride: int) -> nn.Module:
    """A candidate op as the DARTS mixed op builds it (non-affine BN, pooling followed by one), float64."""
    op = create_op(name, 6, stride, affine=False)
    op = nn.Sequential(op, nn.BatchNorm2d(6, affine=False)) if name in POOLING_OPS else op
    return op.double().to(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", [*(name for name in DARTS_PRIMITIVES if name != "none"), "conv_3x3", "conv_7x1_1x7"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("constant_weights", [False, True])
def test_recomputed_ops_give_the_same_outputs_gradients_and_statistics(name, stride, constant_weights) -> None:
    torch.manual_seed(0)
    op = search_op(name, stride)
    reference = copy.deepcopy(op)
    for p in [*op.parameters(), *reference.parameters()]:
        p.requires_grad_(not constant_weights)
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out, expected = run_op(op, SharedReLU(x), recompute=True), reference(x)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(expected)
    ours = torch.autograd.grad(out, [x, *(p for p in op.parameters() if p.requires_grad)], grad)
    theirs = torch.autograd.grad(expected, [x, *(p for p in reference.parameters() if p.requires_grad)], grad)
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(op.buffers(), reference.buffers()):  # BN running statistics, updated once
        torch.testing.assert_close(a, b)
    assert (normalized_chains(op) is None) == (name == "skip_connect")  # an identity, or a FactorizedReduce


@pytest.mark.parametrize("name", [name for name in DARTS_PRIMITIVES if name != "none"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("recompute", [False, True])
def test_an_op_weighed_in_its_last_bn_gives_the_same_sum_and_gradients_keeping_less(
    name, stride, dtype, recompute, saved_activation_bytes
) -> None:
    """``out + w·op(x)`` with w as the scale of the op's last BN: the values, gradients (x, w, the op's weights) and
    statistics of ``addcmul``, which also keeps the BN output (float32 too: a stride-0 scale broke its gradient).
    Recomputed ops keep their BN outputs anyway."""
    torch.manual_seed(0)
    op = search_op(name, stride).to(dtype)
    reference = copy.deepcopy(op)
    x = torch.randn(3, 6, 8, 8, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.tensor(0.3, dtype=dtype, requires_grad=True)
    out = torch.randn(3, 6, 8 // stride, 8 // stride, dtype=dtype).contiguous(memory_format=torch.channels_last)
    ours, ours_bytes = saved_activation_bytes(lambda: run_op(op, SharedReLU(x), recompute, weight=w, out=out))
    theirs, theirs_bytes = saved_activation_bytes(
        lambda: add_weighted(out, w, run_op(reference, SharedReLU(x), recompute))
    )
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(theirs)
    inputs = [x, w, *op.parameters()]
    torch.testing.assert_close(
        torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(theirs, [x, w, *reference.parameters()], grad)
    )
    for a, b in zip(op.buffers(), reference.buffers()):
        torch.testing.assert_close(a, b)
    # weighed by addcmul: an identity or a FactorizedReduce; recomputed chains keep their BN output anyway
    if name == "skip_connect" or recompute:
        assert ours_bytes <= theirs_bytes
    else:
        assert ours_bytes < theirs_bytes


def test_a_sep_conv_keeps_its_input_and_two_bn_outputs_only() -> None:
    """Plain autograd keeps 6 activations of a sep_conv (ReLU outputs, depthwise outputs, BN inputs); recomputed, it
    keeps the ReLU's input (the mixed op's input, kept anyway), its shared output, and the two BN outputs."""
    op = search_op("sep_conv_3x3", 1)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64, requires_grad=True)

    def activations(forward) -> int:
        storages = set()

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.shape == x.shape:
                storages.add(tensor.untyped_storage().data_ptr())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            forward()
        return len(storages)

    assert activations(lambda: op(x)) == 6
    assert activations(lambda: run_op(op, SharedReLU(x), recompute=True)) == 4
    for p in op.parameters():  # an α step: the ReLU and the convs need nothing recomputed and keep nothing
        p.requires_grad_(False)
    assert activations(lambda: run_op(op, SharedReLU(x), recompute=True)) == 3


def test_ops_that_are_not_chains_ending_in_a_training_bn_run_as_they_are() -> None:
    op = search_op("dil_conv_3x3", 1)
    assert normalized_chains(op) is not None
    assert normalized_chains(copy.deepcopy(op).eval()) is None  # running statistics: plain BN
    softplus = copy.deepcopy(op)
    softplus[0] = nn.Softplus()  # not a layer the backward pass knows how to rerun
    assert normalized_chains(softplus) is None
    assert normalized_chains(create_op("dil_conv_3x3", 6, 1, affine=True)) is None


def test_a_second_derivative_through_a_recomputed_op_is_refused_with_the_way_out() -> None:
    op = search_op("sep_conv_3x3", 1)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    out = run_op(op, SharedReLU(x), recompute=True)
    with pytest.raises(RuntimeError, match="recompute_ops=False to differentiate through its gradients"):
        torch.autograd.grad(out.square().sum(), x, create_graph=True)
