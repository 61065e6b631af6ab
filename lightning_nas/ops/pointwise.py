"""The 1x1 convolution, strided by subsampling first.

A stride-s 1x1 convolution reads only every s-th pixel, so it equals a 1x1 convolution of ``x[:, :, ::s, ::s]``.
Computed that way because torch 2.14's CPU stride-2 1x1 convolution of a channels_last input with 4 or fewer
channels writes out of bounds (glibc aborts under ``MALLOC_CHECK_=3``; otherwise a crash or hang steps later, as in
tiny PC-DARTS supernets). It also skips the pixels the strided kernel would pass over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and state dict) that subsamples before it convolves."""

    def __init__(self, C_in: int, C_out: int, stride: int | tuple[int, int] = 1, bias: bool = False) -> None:
        super().__init__(C_in, C_out, 1, stride, bias=bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], weight, bias)
