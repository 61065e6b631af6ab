"""The one-shot kit both supernets (DARTS's ``SearchNetwork``, NAS-Bench-201's ``NB201SearchNetwork``) are made of.

DARTS's continuous relaxation puts a mixed op on every edge: ō(x) = Σ_o softmax(α)_o · o(x) over the candidate ops
(``MixedOp``), the mixed ops reading one state sharing what they compute alike (``SharedInput``). GDAS samples one op
per edge instead (``gumbel_hard``). ``frozen`` holds parameters constant for one forward pass (the weight step's α,
the α step's weights). None of it knows a space's cells or networks.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.ops import DARTS_PRIMITIVES, POOLING_OPS, check_op_name, create_op
from lightning_nas.ops.recompute import SharedReLU, add_weighted, run_op


def check_primitives(primitives: Sequence[str]) -> tuple[str, ...]:
    """The candidate op list as a tuple; raise a ConfigError naming the problem if it cannot form a search space."""
    primitives = tuple(primitives)
    for name in primitives:
        check_op_name(name)
    if len(set(primitives)) != len(primitives):
        raise ConfigError(f"candidate ops must be distinct, got {list(primitives)}")
    if all(name == "none" for name in primitives):
        raise ConfigError(f"candidate ops need at least one op other than 'none', got {list(primitives)}")
    return primitives


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet), so PC-DARTS samples other channels next time."""
    B, C, H, W = x.shape
    return x.view(B, groups, C // groups, H, W).transpose(1, 2).reshape(B, C, H, W)


class SharedInput:
    """What the mixed ops reading one cell state compute alike, computed by the first of them for all: the ReLU that
    every conv op starts with, and, per pooling op, its pooling output and, if its BN normalised with batch
    statistics, its output. The edges of one state have the same stride."""

    def __init__(self) -> None:
        self.relu: SharedReLU | None = None
        self.pooled: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}


def track_batch(norm: nn.BatchNorm2d, u: torch.Tensor) -> None:
    """What ``norm(u)`` does to ``norm``'s running statistics in training mode, without normalising ``u``."""
    tracked = norm.num_batches_tracked
    if not norm.training or tracked is None:  # eval mode, or no running statistics
        return
    tracked.add_(1)
    momentum = 1.0 / float(tracked) if norm.momentum is None else norm.momentum
    torch.batch_norm_update_stats(u.detach(), norm.running_mean, norm.running_var, momentum)


def gumbel_hard(alpha: torch.Tensor, tau: float) -> tuple[torch.Tensor, list[int]]:
    """GDAS (Dong & Yang, CVPR 2019): per edge (row of α) one op drawn from softmax(α) by the Gumbel-max trick, and
    weights that are exactly one-hot in the forward pass but carry the gradient of the Gumbel softmax at temperature
    ``tau`` (straight-through), so only the drawn op is computed and α still learns."""
    logits = (F.log_softmax(alpha, dim=-1) - torch.empty_like(alpha).exponential_().log()) / tau
    soft = F.softmax(logits, dim=-1)
    index = soft.argmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, index[:, None], 1.0)
    return hard - soft.detach() + soft, index.tolist()


class MixedOp(nn.Module):
    """An edge of the supernet: the weighted sum of every candidate op applied to the edge's input.

    The search net has no affine BN anywhere, and follows pooling with a non-affine BN so that its scale matches the
    conv ops' (whose last layer is a BN). With ``partial_channels`` K > 1 (PC-DARTS) only the first C/K channels go
    through the ops; the rest bypass them (max-pooled when the edge reduces) and the channels are shuffled after.
    With ``recompute`` the ops keep about half the memory for the backward pass and recompute the rest
    (``ops.recompute``).

    The mixed ops reading one input compute some things alike (``SharedInput``): the ReLU their conv ops start with,
    and their pooling ops, which have no parameters and whose training-mode BN normalises with the batch's own
    statistics (each edge's BN still updates its own running statistics). The first edge computes them for all, which
    saves their time and memory in the others.
    """

    def __init__(
        self,
        C: int,
        stride: int,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        partial_channels: int = 1,
        recompute: bool = False,
    ) -> None:
        super().__init__()
        if partial_channels < 1 or C % partial_channels:
            raise ConfigError(
                f"partial_channels must be a positive divisor of the {C} channels, got {partial_channels}"
            )
        self.primitives = check_primitives(primitives)
        self.partial_channels = partial_channels
        self.recompute = recompute
        C_op = C // partial_channels
        self.ops = nn.ModuleList()
        for name in self.primitives:
            op = create_op(name, C_op, stride, affine=False)
            self.ops.append(nn.Sequential(op, nn.BatchNorm2d(C_op, affine=False)) if name in POOLING_OPS else op)
        self.bypass = nn.MaxPool2d(2, 2) if stride == 2 else nn.Identity()

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, shared: SharedInput | None = None, chosen: int | None = None
    ) -> torch.Tensor:
        """``weights``: one weight per candidate op (softmax(α) of this edge); ``shared``: what the mixed ops reading
        ``x`` so far computed for the others (this one adds to it), or None; ``chosen``: GDAS's sampled op, the only
        one computed (``weights`` are then one-hot, with the gradient of the Gumbel softmax). The other ops' weights
        are added too, as GDAS's code does: they are 0, but their gradient (the sum of the output's gradient) is the
        baseline the chosen op is compared with, so α learns even when the chosen op is ``none``; without it a
        sampled ``none`` gets no gradient and GDAS drifted to all-``none`` cells on NAS-Bench-201 (SEARCH_QUALITY.md)."""
        if chosen is not None:  # plus the others' weights, exactly 0 but with a gradient, as GDAS's code adds them
            others = torch.ones_like(weights).index_fill_(0, torch.tensor(chosen, device=weights.device), 0.0)
            return weights[chosen] * self.ops[chosen](x) + (weights * others).sum()
        k = self.partial_channels
        shared = SharedInput() if shared is None else shared
        if shared.relu is None:  # the first edge of this input
            shared.relu = SharedReLU(x if k == 1 else x[:, : x.shape[1] // k])
        relu = shared.relu
        out: torch.Tensor | None = None
        for w, op, name in zip(weights, self.ops, self.primitives):
            if name == "none":  # adds weight x 0: not built; its α still gets its gradient through the softmax
                continue
            if name in POOLING_OPS:  # shared by the edges of x: weighed by each
                out = add_weighted(out, w, self._pooling(name, op, relu.x, shared.pooled))
            else:
                out = run_op(op, relu, self.recompute, w, out)
        assert out is not None, "check_primitives keeps an op besides 'none'"
        if k == 1:
            return out
        return channel_shuffle(torch.cat([out, self.bypass(x[:, x.shape[1] // k :])], dim=1), k)

    def _pooling(
        self, name: str, op: nn.Module, x: torch.Tensor, pooled: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """The pooling op ``name`` (pooling, then a non-affine BN) on ``x``, its pooling (and, with batch statistics,
        its output) taken from ``pooled`` if another edge of ``x`` put it there."""
        pool, norm = cast(tuple[nn.Module, nn.BatchNorm2d], tuple(op.children()))  # as __init__ builds it
        u, y = pooled.get(name) or (pool(x), None)
        if y is not None and norm.training:  # another edge normalised u with its batch statistics too
            track_batch(norm, u)
            return y
        y = run_op(norm, SharedReLU(u), self.recompute)
        pooled[name] = (u, y if norm.training else None)
        return y


@contextmanager
def frozen(parameters: Sequence[nn.Parameter]) -> Iterator[None]:
    """``parameters`` without gradients meanwhile, as autograd sees them when it records a forward pass."""
    wanted = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, wanted):
            p.requires_grad_(flag)
