"""The 1x1 convolution: strided by subsampling first, and on CPU a matrix product of channels_last pixels.

- A stride-s 1x1 convolution reads only every s-th pixel, so it equals a 1x1 convolution of ``x[:, :, ::s, ::s]``.
  Computed that way because torch 2.14's CPU stride-2 1x1 convolution of a channels_last input with 4 or fewer
  channels writes out of bounds (glibc aborts under ``MALLOC_CHECK_=3``; otherwise a crash or hang steps later, as in
  tiny PC-DARTS supernets).
- A channels_last tensor is a (pixels, C) matrix in memory, and a 1x1 convolution multiplies it by the (C_out, C)
  weight: ``F.linear`` does that with no copy. Autograd's matrix product keeps its input only when the weight
  needs a gradient, unlike the convolution, which always keeps it: a DARTS α step (weights constant) then saves a
  fifth less (PERFORMANCE.md). Same numbers up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pointwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride)`` for a (C_out, C, 1, 1) ``weight``."""
    x = x[:, :, ::stride, ::stride]
    if x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last):
        return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
    return F.conv2d(x, weight, bias)


torch.fx.wrap("pointwise_conv2d")  # a single node in FX graphs: its branch reads the input's memory format


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and state dict) computed by ``pointwise_conv2d`` (TorchScript runs the
    subsampled convolution)."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(C_in, C_out, 1, stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.stride[0]
        if torch.jit.is_scripting():
            return F.conv2d(x[:, :, ::stride, ::stride], self.weight, self.bias)
        return pointwise_conv2d(x, self.weight, self.bias, stride)
