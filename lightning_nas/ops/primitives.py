"""Candidate operations of the DARTS, ENAS and PNAS cell spaces, and the one registry they are looked up in.

Every op maps ``C`` channels to ``C`` channels and divides the spatial size by ``stride`` (1 or 2). ``affine`` is
True in final networks and False in the search supernet, as in the DARTS paper.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from lightning_nas.errors import ConfigError
from lightning_nas.ops.depthwise import DepthwiseConv2d
from lightning_nas.ops.pointwise import PointwiseConv2d

OpFactory = Callable[[int, int, bool], nn.Module]


class ReLUConvBN(nn.Sequential):
    """ReLU → conv → BN: the preprocessing of cell inputs and the plain convolutions of ENAS/PNAS."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
        affine: bool = True,
    ) -> None:
        conv: nn.Conv2d
        if _pair(kernel_size) == (1, 1) and _pair(padding) == (0, 0):
            conv = PointwiseConv2d(C_in, C_out, stride)
        else:
            conv = nn.Conv2d(C_in, C_out, kernel_size, stride, padding, dilation=dilation, bias=False)
        super().__init__(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(C_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU → dilated depthwise conv → pointwise conv → BN (DARTS's dil_conv)."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Separable conv applied twice, the first time with the stride (DARTS's sep_conv)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class Conv7x1x1x7(nn.Sequential):
    """ReLU → 1x7 conv → 7x1 conv → BN, the factorised 7x7 of NASNet/AmoebaNet/PNAS."""

    def __init__(self, C: int, stride: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


def after_leading_relu(op: nn.Module) -> list[nn.Module] | None:
    """The modules ``op`` runs after the ``nn.ReLU`` it starts with, in order; None if it starts otherwise.

    Every conv op of a mixed op starts by applying ReLU to the same edge input: the mixed op computes it once and
    runs these tails on it (``ops.recompute.run_op``), which saves the duplicate ReLUs' time and memory. Read from
    the op as it is now, so an op whose modules were replaced (another activation) is run whole.
    """
    if not isinstance(op, nn.Sequential) or len(op) == 0:
        return None
    first, *rest = op.children()
    if isinstance(first, nn.ReLU):
        return rest
    head = after_leading_relu(first)
    return None if head is None else [*head, *rest]


class Zero(nn.Module):
    """The 'none' op: no connection. Returns zeros of the strided shape without touching the input's values."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the spatial size with two offset stride-2 1x1 convs, concatenated, so no pixel is skipped."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ConfigError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = PointwiseConv2d(C_in, C_out // 2, stride=2)
        self.conv_2 = PointwiseConv2d(C_in, C_out // 2, stride=2, offset=1)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The offset path starts at pixel (1, 1), so on odd sizes it lacks the last row or column that the other has:
        # padding its input with zeros would give zero outputs there (no bias), so its output is padded instead.
        shifted = F.pad(self.conv_2(x), (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), shifted], dim=1))


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)


OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": _skip,
    "identity": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": lambda C, stride, affine: Conv7x1x1x7(C, stride, affine),
    "conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine=affine),
    "conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine=affine),
    "conv_5x5": lambda C, stride, affine: ReLUConvBN(C, C, 5, stride, 2, affine=affine),
    "dilated_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 2, dilation=2, affine=affine),
    "nor_conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine=affine),
    "nor_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine=affine),
}

POOLING_OPS = frozenset({"avg_pool_3x3", "max_pool_3x3"})
"""The DARTS search supernet follows these with a non-affine BN so their scale matches the conv ops'."""

IDENTITY_OPS = frozenset({"skip_connect", "identity"})
"""Ops that drop path never drops (DARTS applies drop path to every op that is not an identity)."""

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
ENAS_MICRO_OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")
ENAS_MACRO_OPS: tuple[str, ...] = ("conv_3x3", "conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")
PNAS_OPS: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "conv_7x1_1x7",
    "identity",
    "avg_pool_3x3",
    "max_pool_3x3",
    "dilated_conv_3x3",
)
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""NAS-Bench-201's ops, in the benchmark's order; its "nor_conv" is ReLU → conv → BN (``conv_1x1``/``conv_3x3``
under the benchmark's names)."""


def check_op_name(name: str) -> None:
    """Raise a ValueError naming the unknown op and listing the valid ones."""
    if name not in OPS:
        raise ConfigError(f"unknown op {name!r}; valid ops are: {', '.join(sorted(OPS))}")


def create_op(name: str, C: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the op registered as ``name`` for ``C`` channels and the given stride (1 or 2)."""
    check_op_name(name)
    if stride not in (1, 2):
        raise ConfigError(f"op stride must be 1 or 2, got {stride}")
    return OPS[name](C, stride, affine)
