"""The one-shot kit: the mixed op is the weighted sum of its candidate ops, shares what its edges compute alike with
the same outputs, gradients and statistics, and sends 1/K of the channels through its ops with partial channels."""

import copy

import pytest
import torch

from lightning_nas.ops import DARTS_PRIMITIVES
from lightning_nas.spaces.oneshot import MixedOp


def test_mixed_op_is_the_weighted_sum_of_its_ops():
    torch.manual_seed(0)
    op = MixedOp(4, stride=1).eval()
    x = torch.randn(2, 4, 6, 6)
    weights = torch.softmax(torch.randn(len(DARTS_PRIMITIVES)), dim=0)
    expected = sum(w * candidate(x) for w, candidate in zip(weights, op.ops))
    torch.testing.assert_close(op(x, weights), expected)
    one_hot = torch.zeros(len(DARTS_PRIMITIVES))
    one_hot[DARTS_PRIMITIVES.index("skip_connect")] = 1.0
    torch.testing.assert_close(op(x, one_hot), x)


def test_mixed_op_follows_pooling_with_non_affine_bn_and_has_no_affine_bn():
    op = MixedOp(4, stride=2)
    pool = op.ops[DARTS_PRIMITIVES.index("max_pool_3x3")]
    assert isinstance(pool[-1], torch.nn.BatchNorm2d) and not pool[-1].affine
    assert all(not m.affine for m in op.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert op(torch.randn(2, 4, 6, 6), torch.full((8,), 1 / 8)).shape == (2, 4, 3, 3)


def test_none_op_still_gets_an_alpha_gradient():
    op = MixedOp(4, stride=1)
    alpha = torch.zeros(len(DARTS_PRIMITIVES), requires_grad=True)
    op(torch.randn(2, 4, 6, 6), torch.softmax(alpha, 0)).square().sum().backward()
    assert alpha.grad[DARTS_PRIMITIVES.index("none")] != 0


def test_partial_channels_send_one_kth_through_the_ops_and_shuffle_the_rest():
    torch.manual_seed(0)
    op = MixedOp(8, stride=2, partial_channels=4).eval()
    assert all(m.in_channels == 2 for m in op.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1)
    x = torch.randn(2, 8, 6, 6)
    weights = torch.softmax(torch.randn(len(DARTS_PRIMITIVES)), dim=0)
    out = op(x, weights)
    assert out.shape == (2, 8, 3, 3)
    # The first 2 channels go through the ops, the other 6 are max-pooled; a 4-group shuffle interleaves them.
    through_ops = sum(w * candidate(x[:, :2]) for w, candidate in zip(weights, op.ops) if candidate is not op.ops[0])
    unshuffled = torch.cat([through_ops, torch.nn.functional.max_pool2d(x[:, 2:], 2)], dim=1)
    torch.testing.assert_close(out, unshuffled[:, [0, 2, 4, 6, 1, 3, 5, 7]])
    with pytest.raises(ValueError, match="divisor of the 8 channels"):
        MixedOp(8, stride=1, partial_channels=3)


def test_mixed_op_applies_one_shared_relu_for_its_conv_ops_with_the_same_outputs_gradients_and_keys():
    torch.manual_seed(0)
    op = MixedOp(4, stride=1)
    reference = copy.deepcopy(op)
    calls = []
    for module in op.modules():
        if isinstance(module, torch.nn.ReLU):
            module.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    alpha = torch.randn(len(DARTS_PRIMITIVES), requires_grad=True)
    out = op(x, torch.softmax(alpha, 0))
    # only the second ReLU inside each of the 2 sep convs runs as a module; the 6 leading ones are one F.relu
    assert len(calls) == 2
    expected = sum(w * candidate(x) for w, candidate in zip(torch.softmax(alpha, 0), reference.ops))
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), (x, alpha))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.square().sum(), (x, alpha)))
    assert op.state_dict().keys() == reference.state_dict().keys()
    for bn, reference_bn in zip(op.modules(), reference.modules()):
        if isinstance(bn, torch.nn.BatchNorm2d):
            torch.testing.assert_close(bn.running_mean, reference_bn.running_mean)
