"""The 1x1 convolution, strided by subsampling first.

A stride-s 1x1 convolution reads only every s-th pixel, so it equals a 1x1 convolution of ``x[:, :, ::s, ::s]``.
Computed that way because torch 2.14's CPU stride-2 1x1 convolution of a channels_last input with 4 or fewer
channels writes out of bounds (glibc aborts under ``MALLOC_CHECK_=3``; otherwise a crash or hang steps later, as in
tiny PC-DARTS supernets). It also skips the pixels the strided kernel would pass over.

The subsampling's gradient is made in the input's memory format: a slice's is a zero-filled NCHW tensor whatever the
input's, and it turned the gradients of the channels_last ops before it NCHW, on which their kernels are slower.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _Subsample(torch.autograd.Function):
    """``x[:, :, o::sh, o::sw]`` whose gradient has ``x``'s memory format; it keeps no tensor for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, stride: tuple[int, int], offset: int) -> torch.Tensor:
        ctx.stride, ctx.offset, ctx.shape = stride, offset, x.shape
        channels_last = x.stride(1) == 1 and x.shape[1] > 1  # channels innermost, as in a channels_last view
        ctx.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return x[:, :, offset :: stride[0], offset :: stride[1]]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (sh, sw), o = ctx.stride, ctx.offset
        grad_x = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.memory_format).zero_()
        grad_x[:, :, o::sh, o::sw] = grad
        return grad_x, None, None


def subsample(x: torch.Tensor, stride: tuple[int, int], offset: int = 0) -> torch.Tensor:
    """``x[:, :, o::sh, o::sw]``, with a gradient in ``x``'s memory format (TorchScript: the plain slice)."""
    if stride == (1, 1) and offset == 0:  # nothing to subsample: its backward pass would copy the gradient
        return x
    if torch.jit.is_scripting():
        return x[:, :, offset :: stride[0], offset :: stride[1]]
    return _subsample(x, stride, offset)


@torch.jit.unused
def _subsample(x: torch.Tensor, stride: tuple[int, int], offset: int) -> torch.Tensor:
    return _Subsample.apply(x, stride, offset)


torch.fx.wrap("subsample")  # a single node in FX graphs: an autograd Function cannot be traced through


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and state dict) that subsamples before it convolves, from pixel
    (``offset``, ``offset``): FactorizedReduce's second path reads the grid shifted by one pixel."""

    def __init__(
        self, C_in: int, C_out: int, stride: int | tuple[int, int] = 1, bias: bool = False, offset: int = 0
    ) -> None:
        super().__init__(C_in, C_out, 1, stride, bias=bias)
        self.offset = offset

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(subsample(x, (sh, sw), self.offset), weight, bias)
