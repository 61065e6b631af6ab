import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.ops import create_op
from lightning_nas.ops.depthwise import DepthwiseConv2d, depthwise_conv2d, space_to_batch

# (kernel, dilation, stride, size): dense phases at stride 1 (3x3, and 5x5 on phases as large as the kernel and
# smaller, which the weight gradient pads), phase (0, 0) at stride d, an image smaller than the kernel (padded too),
# and the sizes that fall back to the plain convolution (odd at stride 1, d = 1)
CASES = [(3, 2, 1, 8), (5, 2, 1, 10), (5, 2, 1, 8), (3, 2, 2, 8), (5, 1, 1, 4), (5, 2, 2, 7), (3, 2, 1, 7),
         (5, 1, 1, 8), (3, 1, 2, 8)]


def _plain(x: torch.Tensor, weight: torch.Tensor, stride: int, dilation: int) -> torch.Tensor:
    padding = dilation * (weight.shape[-1] - 1) // 2
    return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])


@pytest.mark.parametrize("k, d, stride, size", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_and_gradients_equal_the_plain_convolution(k, d, stride, size, channels_last) -> None:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, size, size + 2 * d).contiguous(memory_format=fmt).requires_grad_()
    weight = torch.randn(4, 1, k, k, requires_grad=True)
    ours = depthwise_conv2d(x, weight, stride, d * (k - 1) // 2, d)
    plain = _plain(x, weight, stride, d)
    torch.testing.assert_close(ours, plain)
    grad = torch.randn_like(plain)
    for a, b in zip(torch.autograd.grad(ours, (x, weight), grad), torch.autograd.grad(plain, (x, weight), grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k, d, stride, size", CASES[:6])
def test_gradients_and_second_derivatives_match_finite_differences(k, d, stride, size) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 2, size, size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 1, k, k, dtype=torch.float64, requires_grad=True)

    def conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, weight, stride, d * (k - 1) // 2, d)

    assert torch.autograd.gradcheck(conv, (x, weight))
    assert torch.autograd.gradgradcheck(conv, (x, weight))


@pytest.mark.parametrize("d", [1, 2])
def test_weights_held_constant_keep_no_input_for_the_backward_pass(d) -> None:
    """An α step treats the weights as constants: then the conv needs no copy of its input afterwards (oneDNN's
    own keeps it)."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    weight = torch.randn(4, 1, 3, 3)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = depthwise_conv2d(x, weight, 1, d, d)
    assert [t.shape for t in saved] == [weight.shape]
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.autograd.grad(_plain(x, weight, 1, d).sum(), x)[0])


def test_space_to_batch_lists_the_pixel_phases_phase_major() -> None:
    x = torch.arange(2 * 3 * 4 * 6.0).reshape(2, 3, 4, 6)
    phases = space_to_batch(x, 2)
    assert phases.shape == (8, 3, 2, 3)
    torch.testing.assert_close(phases[2:4], x[:, :, 0::2, 1::2])  # phase (0, 1): even rows, odd columns
    torch.testing.assert_close(phases[6:8], x[:, :, 1::2, 1::2])


def test_is_a_drop_in_conv2d_in_the_dil_conv_op() -> None:
    op = create_op("dil_conv_5x5", 4, stride=2, affine=False)
    conv = op[1]
    assert type(conv) is DepthwiseConv2d and isinstance(conv, nn.Conv2d)
    plain = nn.Conv2d(4, 4, 5, 2, 4, dilation=2, groups=4, bias=False)
    assert plain.load_state_dict(conv.state_dict()) is not None
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(conv(x), plain(x))
    torch.testing.assert_close(torch.jit.script(conv)(x), plain(x))
