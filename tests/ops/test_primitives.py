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
