"""The depthwise convolutions of DARTS's sep_conv and dil_conv ops, computed on CPU so that an α step (weights held
constant) keeps nothing for them, and the dilated ones through dense depthwise convolutions.

oneDNN's dense 3x3 depthwise kernels are fast both ways, but its dilated depthwise backward pass is 8-30x slower than
the forward pass, and it took about a quarter of a DARTS search step (PERFORMANCE.md). A convolution with
dilation d reads every d-th pixel, so it splits exactly into dense convolutions on the d x d pixel phases of its input
("space to batch", as atrous convolution is done in DeepLab):

- stride d: only phase (0, 0) is ever read, and the op is a dense convolution of ``x[:, :, ::d, ::d]``;
- stride 1: the forward pass stays the fast dilated kernel; the backward pass gets the input gradient from the
  dilated convolution of the output gradient with the flipped kernel, and the weight gradient from the dense
  weight gradient over the d² phases of input and output gradient, which are built only then, so the phases cost
  no memory between the passes.

Stride-1 dense depthwise convolutions run the same backward pass (their input gradient is the convolution of the
output gradient with the flipped kernel, as fast as oneDNN's own here), so that, like the dilated ones, they keep
their input only for a weight gradient: oneDNN's convolution keeps it whatever is asked. All give the same numbers
as the plain convolution up to float rounding, and stay twice differentiable.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from lightning_nas.ops.pointwise import subsample


def space_to_batch(x: torch.Tensor, d: int) -> torch.Tensor:
    """(B, C, H, W) -> (d² B, C, H/d, W/d) in channels_last: the d x d pixel phases of ``x`` as separate images,
    phase-major, made in one copy."""
    B, C, H, W = x.shape
    nhwc = x.permute(0, 2, 3, 1).reshape(B, H // d, d, W // d, d, C)
    phases = nhwc.permute(2, 4, 0, 1, 3, 5).reshape(d * d * B, H // d, W // d, C)
    return phases.permute(0, 3, 1, 2)


class _SameDepthwise(torch.autograd.Function):
    """A stride-1 depthwise convolution with dilation d and padding d(k-1)/2, whose backward pass runs as forward
    convolutions and, dilated, as dense ones over the pixel phases."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, dilation: int, padding: int) -> torch.Tensor:
        ctx.dilation, ctx.padding = dilation, padding
        # the input is kept only for a weight gradient; an α step (weights constant) keeps nothing
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        return F.conv2d(x, weight, None, 1, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        d, C = ctx.dilation, weight.shape[0]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(2, 3), None, 1, ctx.padding, d, C)
        if ctx.needs_input_grad[1]:
            k, padding = weight.shape[-1], ctx.padding
            if d > 1 and x.shape[2] % d == 0 and x.shape[3] % d == 0:  # dense over the phases
                grad, x, d, padding = space_to_batch(grad, d), space_to_batch(x, d), 1, padding // d
            if min(x.shape[2:]) < k:  # oneDNN's kernel for a kernel larger than the image is 3-5x slower than padding
                x, padding = F.pad(x, [padding] * 4), 0
            args = (grad, x, weight, None, [1, 1], [padding] * 2, [d, d])
            grad_w = torch.ops.aten.convolution_backward(*args, False, [0, 0], C, [False, True, False])[1]
        return grad_x, grad_w, None, None


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, dilation: int) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups=C)`` for square depthwise weights (C, 1, k, k);
    on CPU with padding d(k-1)/2, at stride 1 through ``_SameDepthwise``, at stride d > 1 as the dense convolution
    of the only pixel phase it reads."""
    C, k, d = x.shape[1], weight.shape[-1], dilation
    if x.device.type == "cpu" and padding == d * (k - 1) // 2:
        if stride == 1:
            return _SameDepthwise.apply(x, weight, d, padding)
        if stride == d:
            return F.conv2d(subsample(x, (d, d)), weight, None, 1, (k - 1) // 2, 1, C)
    return F.conv2d(x, weight, None, stride, padding, dilation, C)


torch.fx.wrap("depthwise_conv2d")  # a single node in FX graphs: its branches read the input's shape


@register_notrace_module  # a leaf for timm's FX feature extraction, scripted as the plain convolution
class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=False)``, same parameters and state dict,
    computed by ``depthwise_conv2d`` (TorchScript runs the plain convolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return self._conv_forward(x, self.weight, self.bias)

    @torch.jit.unused
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The convolution with ``weight`` (nn.Conv2d's hook, which the search ops' recomputation calls too)."""
        (k, _), (stride, _), padding, (dilation, _) = self.kernel_size, self.stride, self.padding, self.dilation
        square = self.kernel_size == (k, k) and self.stride == (stride, stride) and self.dilation == (dilation,) * 2
        plain = bias is not None or self.padding_mode != "zeros" or self.groups != self.in_channels
        if plain or not square or padding != (padding[0],) * 2:
            return super()._conv_forward(x, weight, bias)
        return depthwise_conv2d(x, weight, stride, int(padding[0]), dilation)
