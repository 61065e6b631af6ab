import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.ops.pointwise import PointwiseConv2d


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_pointwise_conv_equals_the_strided_1x1_conv(stride: int, size: int) -> None:
    torch.manual_seed(0)
    conv = PointwiseConv2d(6, 5, stride, bias=True)
    x = torch.randn(2, 6, size, size + 1)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, stride=stride))
    assert list(conv.state_dict()) == ["weight", "bias"]


def test_channels_last_pointwise_conv_matches_the_conv_forward_and_backward() -> None:
    torch.manual_seed(0)
    conv = PointwiseConv2d(6, 5, bias=True).to(memory_format=torch.channels_last)
    x = torch.randn(2, 6, 7, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = conv(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, conv.weight, conv.bias], g)
    reference = F.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(out, reference)
    for got, want in zip(grads, torch.autograd.grad(reference, [x, conv.weight, conv.bias], g)):
        torch.testing.assert_close(got, want)


def saved_bytes(fn) -> int:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes)


def test_pointwise_conv_keeps_its_input_only_for_a_weight_gradient() -> None:
    """A DARTS α step records the weights as constants: then the input (the layer's largest tensor) is not kept."""
    conv = PointwiseConv2d(16, 16).to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    conv.weight.requires_grad_(False)
    assert saved_bytes(lambda: conv(x)) < x.numel() * x.element_size()
    conv.weight.requires_grad_(True)
    assert saved_bytes(lambda: conv(x)) >= x.numel() * x.element_size()


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
