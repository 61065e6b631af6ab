import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.ops.pointwise import PointwiseConv2d


@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("size", [7, 8])
def test_pointwise_conv_equals_the_strided_1x1_conv(stride: int | tuple[int, int], size: int) -> None:
    torch.manual_seed(0)
    conv = PointwiseConv2d(6, 5, stride, bias=True)
    x = torch.randn(2, 6, size, size + 1)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, stride=stride))
    assert list(conv.state_dict()) == ["weight", "bias"]


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
