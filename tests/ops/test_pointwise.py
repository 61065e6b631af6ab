import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.ops.depthwise import DepthwiseConv2d
from lightning_nas.ops.pointwise import PointwiseConv2d, subsample


@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("size", [7, 8])
def test_pointwise_conv_equals_the_strided_1x1_conv(stride: int | tuple[int, int], size: int) -> None:
    torch.manual_seed(0)
    conv = PointwiseConv2d(6, 5, stride, bias=True)
    x = torch.randn(2, 6, size, size + 1)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, stride=stride))
    assert list(conv.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("size", [7, 8])
def test_subsample_equals_the_slice_and_keeps_the_memory_format_in_its_gradient(offset: int, size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ours, sliced = subsample(x, (2, 3), offset), x[:, :, offset::2, offset::3]
    torch.testing.assert_close(ours, sliced, rtol=0, atol=0)
    grad = torch.randn_like(sliced)
    (ours_grad,), (sliced_grad,) = torch.autograd.grad(ours, x, grad), torch.autograd.grad(sliced, x, grad)
    torch.testing.assert_close(ours_grad, sliced_grad, rtol=0, atol=0)
    assert ours_grad.is_contiguous(memory_format=torch.channels_last)
    assert not sliced_grad.is_contiguous(memory_format=torch.channels_last)  # control: a slice's gradient is NCHW
    assert torch.autograd.gradgradcheck(lambda t: subsample(t, (2, 3), offset), (x,))


def test_subsampling_by_one_returns_the_input_itself() -> None:
    """A stride-1 1x1 conv (the cells' preprocessing) must not pay a zero-filled copy of its gradient."""
    x = torch.randn(2, 3, 4, 4)
    assert subsample(x, (1, 1)) is x
    assert subsample(x, (1, 1), offset=1) is not x  # control: an offset drops the first row and column
    assert subsample(x, (1, 1), offset=1).shape == (2, 3, 3, 3)


@pytest.mark.parametrize(
    "conv",
    [
        lambda: PointwiseConv2d(8, 6, stride=2),
        lambda: PointwiseConv2d(8, 6, stride=2, offset=1),
        lambda: DepthwiseConv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
        lambda: DepthwiseConv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=8, bias=False),
    ],
    ids=["1x1", "1x1_offset", "depthwise", "dilated"],
)
def test_strided_convs_give_channels_last_inputs_channels_last_gradients(conv) -> None:
    """A strided conv's input gradient keeps the channels_last format (slicing gave NCHW ones, which made the ops
    before it slower), with the values of the conv run in NCHW."""
    torch.manual_seed(0)
    module = conv().double()
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64, requires_grad=True)
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    out, out_cl = module(x), module.to(memory_format=torch.channels_last)(x_cl)
    torch.testing.assert_close(out_cl, out)
    grad = torch.randn_like(out)
    (grad_x,), (grad_x_cl,) = torch.autograd.grad(out, x, grad), torch.autograd.grad(out_cl, x_cl, grad)
    torch.testing.assert_close(grad_x_cl, grad_x)
    assert grad_x_cl.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("op", ["skip_connect", "conv_1x1"])
def test_strided_1x1_ops_with_few_channels_last_channels_keep_the_heap_intact(tmp_path, op: str) -> None:
    """torch 2.14's stride-2 1x1 conv of a 4-channel channels_last input corrupts the heap (glibc aborts under
    MALLOC_CHECK_=3): the reducing skip (FactorizedReduce) and conv_1x1 must not run it."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import torch\nfrom lightning_nas.ops import create_op\n"
        f"op = create_op({op!r}, 4, stride=2).to(memory_format=torch.channels_last)\n"
        "x = torch.randn(2, 4, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()\n"
        "for _ in range(5):\n    op(x).sum().backward()\n"
    )
    env = {**os.environ, "MALLOC_CHECK_": "3", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
