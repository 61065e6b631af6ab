import pytest
import torch
from torch import nn

from lightning_nas.ops import OPS, FactorizedReduce, create_op


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_maps_channels_and_strides(name: str, stride: int) -> None:
    op = create_op(name, C=8, stride=stride, affine=True)
    out = op(torch.randn(2, 8, 9, 10))
    assert out.shape == (2, 8, -(-9 // stride), -(-10 // stride))


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_affine_follows_the_flag(affine: bool) -> None:
    norms = [m for m in create_op("sep_conv_3x3", 4, affine=affine).modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2
    assert all(norm.affine == affine for norm in norms)


def test_none_op_outputs_zeros_and_skip_is_identity_at_stride_one() -> None:
    x = torch.randn(1, 4, 6, 6)
    assert torch.count_nonzero(create_op("none", 4, stride=2)(x)) == 0
    assert torch.equal(create_op("skip_connect", 4)(x), x)
    assert isinstance(create_op("skip_connect", 4, stride=2), FactorizedReduce)


def test_unknown_op_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown op 'sep_conv_9x9'.*sep_conv_3x3"):
        create_op("sep_conv_9x9", 4)


def test_invalid_stride_is_rejected() -> None:
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        create_op("sep_conv_3x3", 4, stride=3)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_is_two_offset_stride_2_convs(size: int, channels_last: bool) -> None:
    torch.manual_seed(0)
    op = FactorizedReduce(4, 6, affine=False)
    x = torch.randn(2, 4, size, size + 1)
    if channels_last:
        op, x = op.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    r = torch.relu(x)
    shifted = torch.nn.functional.pad(r[:, :, 1:, 1:], (0, r.shape[-1] % 2, 0, r.shape[-2] % 2))
    paths = [torch.nn.functional.conv2d(r, op.conv_1.weight, stride=2),
             torch.nn.functional.conv2d(shifted, op.conv_2.weight, stride=2)]
    torch.testing.assert_close(op(x), op.bn(torch.cat(paths, dim=1)))
