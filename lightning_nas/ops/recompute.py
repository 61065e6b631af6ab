"""How a mixed op runs its candidate ops: one shared ReLU, the op's weight as the scale of its last BN, and optionally
ops that keep little but their BN outputs.

Every conv op of a mixed op starts with a ReLU of the edge input: it is computed once (``SharedReLU``), keeping its
input, which the mixed op keeps anyway, rather than its output.

Every op but the identity ends in a non-affine BN, and the mixed op weighs its output: w·BN(u) is the BN kernel with
w as its scale (``weighted_norm``), whose backward kernel gives u's gradient, already scaled, and w's, Σ grad·BN(u),
in its one pass over grad and u. ``addcmul`` instead keeps BN(u) beside u and takes four more passes over the memory
in the backward pass of an α step.

With ``recompute`` (``SearchNetwork(recompute_ops=True)``): every candidate op of the DARTS supernet is one or more
chains of cheap layers (ReLU, convolutions, pooling) ending in a non-affine BN, and plain autograd keeps the input of
every conv and BN in them, most of a search step's memory (the mixed op pools once per input, and runs the pooling
op's BN alone as a chain). A non-affine BN's backward pass needs only its output
y = (u − mean)·invstd, which α's gradient needs too. So each chain runs as one autograd function that keeps its
input and y; its backward pass recomputes what comes before the chain's last conv (a ReLU and a depthwise conv, or a
pooling) and takes the last conv's and the BN's gradients (and the op weight's) from their kernels directly. When no
weight in the chain wants a gradient (an α step), its ReLUs and stride-1 depthwise convs keep nothing extra anyway
and run recorded, so nothing is recomputed. The numbers are plain autograd's up to float rounding; the modules,
parameters and BN statistics are the ops' own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator, cast

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.ops.depthwise import DepthwiseConv2d
from lightning_nas.ops.pointwise import PointwiseConv2d
from lightning_nas.ops.primitives import after_leading_relu


@dataclass(frozen=True)
class NormalizedChain:
    """``prefix`` layers, then ``last`` (a plain bias-free conv, or None), then ``norm``: a training-mode non-affine
    BN with running statistics."""

    prefix: tuple[nn.Module, ...]
    last: nn.Conv2d | None
    norm: nn.BatchNorm2d

    def weights(self) -> list[torch.Tensor]:
        """The prefix convs' weights, then the last conv's, read now (so a ``functional_call`` swap is seen)."""
        convs = [*(m for m in self.prefix if isinstance(m, nn.Conv2d)), *([] if self.last is None else [self.last])]
        return [conv.weight for conv in convs]

    def run_prefix(self, x: torch.Tensor, weights: Iterator[torch.Tensor]) -> torch.Tensor:
        """The prefix on ``x``, its convs with the next of ``weights`` (theirs, or stand-ins for them)."""
        for module in self.prefix:
            x = module._conv_forward(x, next(weights), None) if isinstance(module, nn.Conv2d) else module(x)
        return x


def _recomputable(module: nn.Module) -> bool:
    """A layer that gives the same output when run again, and that ``run_prefix`` can run with stand-in weights."""
    if isinstance(module, nn.Conv2d):  # these three compute their forward pass as ``_conv_forward``
        plain = type(module) in (nn.Conv2d, DepthwiseConv2d, PointwiseConv2d)
        return plain and module.bias is None and module.padding_mode == "zeros"
    return isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) or isinstance(module, nn.ReLU) and not module.inplace


def _plain_conv(module: nn.Module) -> bool:
    """A conv that is ``F.conv2d`` with its attributes (not a subclass that computes it another way)."""
    return type(module) is nn.Conv2d and isinstance(module.padding, tuple)


def sequential_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """The layers that ``modules`` run in order, with (nested) plain ``nn.Sequential``\\ s opened."""
    layers: list[nn.Module] = []
    pending = list(modules)
    while pending:
        module = pending.pop(0)
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            pending = [*module.children(), *pending]
        else:
            layers.append(module)
    return layers


def _lean_norm(module: nn.Module) -> bool:
    """A training-mode non-affine BN with running statistics and a momentum: what ``weighted_norm`` and the chains
    compute with its kernels directly."""
    return (
        type(module) is nn.BatchNorm2d
        and module.training
        and not module.affine
        and module.track_running_stats
        and module.momentum is not None
    )


def weighted_norm(norm: nn.BatchNorm2d, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``weight · norm(u)`` for a ``_lean_norm``, with ``weight`` (a 0-d tensor) as the BN kernel's scale."""
    cast(torch.Tensor, norm.num_batches_tracked).add_(1)
    # a dense scale: torch 2.14's CPU BN backward pass returns a wrong input gradient for a stride-0 one (expand)
    scale = weight.expand(u.shape[1]).contiguous()
    momentum = cast(float, norm.momentum)  # a _lean_norm has one
    return F.batch_norm(u, norm.running_mean, norm.running_var, scale, None, True, momentum, norm.eps)


def add_weighted(out: torch.Tensor | None, weight: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``out + weight·y`` in one pass over the memory (``weight·y`` when ``out`` is None)."""
    return weight * y if out is None else torch.addcmul(out, weight, y)


def normalized_chains(op: nn.Module) -> list[NormalizedChain] | None:
    """``op`` as the chains it runs in order, if it is nothing but (nested) ``nn.Sequential``\\ s of recomputable
    layers each run of which ends in a training-mode non-affine BN; None otherwise (run it as it is). Read from the
    op as it is now, so an op whose modules were replaced or that is in eval mode is run whole."""
    chains: list[NormalizedChain] = []
    prefix: list[nn.Module] = []
    for module in sequential_layers([op]):
        if type(module) is nn.BatchNorm2d:
            if not _lean_norm(module):
                return None
            last = prefix.pop() if prefix and _plain_conv(prefix[-1]) else None
            chains.append(NormalizedChain(tuple(prefix), last, module))  # type: ignore[arg-type]
            prefix = []
        elif _recomputable(module):
            prefix.append(module)
        else:
            return None
    return chains if chains and not prefix else None


class _NormalizedChainFunction(torch.autograd.Function):
    """One ``NormalizedChain`` on ``x``, saving only ``x`` and the BN output y; with ``scale`` (the mixed op's weight
    of a chain that ends an op), ``out + scale·y``, whose backward pass takes the scale's gradient from the BN's
    backward kernel, as ``weighted_norm`` does."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        chain: NormalizedChain,
        out: torch.Tensor | None,
        scale: torch.Tensor | None,
        *weights: torch.Tensor,
    ) -> torch.Tensor:
        u = chain.run_prefix(x, iter(weights))
        if chain.last is not None:
            u = chain.last(u)
        norm = chain.norm
        momentum = cast(float, norm.momentum)  # normalized_chains admits a BN with a momentum only
        y, _, invstd = torch.native_batch_norm(
            u, None, None, norm.running_mean, norm.running_var, True, momentum, norm.eps
        )
        norm.num_batches_tracked.add_(1)  # type: ignore[union-attr]
        ctx.chain, ctx.input_shape = chain, x.shape
        # the input only to recompute the prefix, or for the last conv's weight gradient
        keep_x = bool(chain.prefix) or chain.last is not None and ctx.needs_input_grad[-1]
        ctx.save_for_backward(x if keep_x else None, y, invstd, scale, *weights)
        return y if scale is None else add_weighted(out, scale, y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: the kernels below would drop the terms through y silently
            raise RuntimeError("recompute_ops=True supports first derivatives only; build the supernet with "
                               "recompute_ops=False to differentiate through its gradients (create_graph=True)")
        x, y, invstd, scale, *weights = ctx.saved_tensors
        chain: NormalizedChain = ctx.chain
        needs = ctx.needs_input_grad
        needs_x, needs_out, needs_scale, needs_w = needs[0], needs[2], needs[3], needs[4:]
        # the BN backward pass on its normalised output (mean 0, invstd 1), scaled by its real invstd (and the scale);
        # its weight gradient Σ grad·y is the scale's
        grad_z, grad_scale, _ = torch.ops.aten.native_batch_norm_backward(
            grad, y, invstd if scale is None else invstd * scale, None, None, torch.zeros_like(invstd),
            torch.ones_like(invstd), True, 0.0, [True, needs_scale, False],
        )
        head = (grad if needs_out else None, None if grad_scale is None else grad_scale.sum())
        z, prefix_weights = x, weights[: len(weights) - (chain.last is not None)]
        if chain.prefix:  # recompute it, recorded, with stand-ins for its weights that collect their gradients
            with torch.enable_grad():
                x = x.detach().requires_grad_(needs_x)
                prefix_weights = [w.detach().requires_grad_(needed) for w, needed in zip(prefix_weights, needs_w)]
                z = chain.run_prefix(x, iter(prefix_weights))
        grad_last = None
        if chain.last is not None:
            last = chain.last
            if z is None:  # the input was not kept: only its shape is needed
                z = grad_z.new_empty(()).expand(ctx.input_shape)
            grad_z, grad_last, _ = torch.ops.aten.convolution_backward(
                grad_z, z.detach(), weights[-1], None, last.stride, last.padding, last.dilation, False, [0, 0],
                last.groups, [z.requires_grad or needs_x, needs_w[-1], False],
            )
        if not chain.prefix:
            return (grad_z, None, *head, *([] if chain.last is None else [grad_last]))
        inputs = [t for t in (x, *prefix_weights) if t.requires_grad]
        grads = iter(torch.autograd.grad(z, inputs, grad_z))
        grad_x = next(grads) if needs_x else None
        grad_prefix = [next(grads) if w.requires_grad else None for w in prefix_weights]
        return (grad_x, None, *head, *grad_prefix, *([] if chain.last is None else [grad_last]))


class _ReLUKeepingInput(torch.autograd.Function):
    """ReLU that keeps its input for the backward pass, not its output as ``F.relu`` does."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, x, 0)  # differentiable: a second derivative goes through


class SharedReLU:
    """ReLU of one input, computed (keeping the input) once for every op that starts with it."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.out: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        if self.out is None:
            self.out = _ReLUKeepingInput.apply(self.x)
        return self.out


def run_op(
    op: nn.Module,
    relu: SharedReLU,
    recompute: bool = False,
    weight: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``op(relu.x)`` inside a mixed op whose input is ``relu.x``, or with ``weight`` ``out + weight·op(relu.x)`` (an
    op ending in a lean BN through ``weighted_norm``). An op that starts with a ReLU takes the shared one; with
    ``recompute``, an op that ``normalized_chains`` reads as chains runs them through ``_NormalizedChainFunction``
    (when autograd records), which keep their BN output. Not for a second derivative through the supernet: the
    chains' backward pass is not differentiable (and says so)."""
    x = relu.x
    chains = normalized_chains(op) if recompute and torch.is_grad_enabled() else None
    if chains is None:
        tail = after_leading_relu(op)
        layers = sequential_layers([op] if tail is None else tail)
        x = x if tail is None else relu()
        fused = weight is not None and bool(layers) and _lean_norm(layers[-1])
        for module in layers[:-1] if fused else layers:
            x = module(x)
        if fused:
            y = weighted_norm(cast(nn.BatchNorm2d, layers[-1]), x, cast(torch.Tensor, weight))
            return y if out is None else out + y
        return x if weight is None else add_weighted(out, weight, x)
    for i, chain in enumerate(chains):
        if x is relu.x and chain.prefix and isinstance(chain.prefix[0], nn.ReLU):
            x, chain = relu(), replace(chain, prefix=chain.prefix[1:])
        constant = not any(w.requires_grad for w in chain.weights())
        if constant and all(isinstance(m, (nn.ReLU, DepthwiseConv2d)) for m in chain.prefix):
            # with constant weights a depthwise conv keeps nothing (at stride 1; its input at stride 2), and a ReLU
            # keeping its input nothing that is not kept anyway: no need to recompute such a prefix
            for module in chain.prefix:
                x = _ReLUKeepingInput.apply(x) if isinstance(module, nn.ReLU) else module(x)
            chain = replace(chain, prefix=())
        if i < len(chains) - 1 or weight is None:
            x = _NormalizedChainFunction.apply(x, chain, None, None, *chain.weights())
        else:  # the op's last chain weighs its output and adds it
            x = _NormalizedChainFunction.apply(x, chain, out, weight, *chain.weights())
    return x
