"""The second-order DARTS architecture gradient: differentiate L_val through one virtual weight step.

Two forms of the virtual step exist. The paper's (Liu et al., 2019, eq. 7) is a plain gradient step,
w' = w − ξ ∇w L_train(w, α). The official code (quark0/darts ``architect.py``, also pt.darts) takes the step its SGD
optimizer would take next: w' = w − ξ (μ·b + ∇w L_train(w, α) + λw), with the optimizer's momentum μ, weight decay λ
and momentum buffer b (zero before its first step). The published DARTS results come from the official form.
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol, cast

import torch

from lightning_nas.spaces import Supernet

Batch = tuple[torch.Tensor, torch.Tensor]
VirtualStep = Literal["official", "paper"]


class LossFn(Protocol):
    """The supernet's loss on a batch; ``alpha_grad`` / ``weight_grad`` False record α / the weights as constants."""

    def __call__(self, batch: Batch, alpha_grad: bool = True, weight_grad: bool = True) -> torch.Tensor: ...


def virtual_step_direction(
    weights: list[torch.nn.Parameter], w_optimizer: torch.optim.Optimizer | None
) -> list[torch.Tensor]:
    """The direction d of the virtual step w' = w − ξ d, from the gradients in ``w.grad``: ∇w L_train (the paper's
    form, ``w_optimizer=None``) or μ·b + ∇w L_train + λw with ``w_optimizer``'s momentum, weight decay and momentum
    buffers (the official form; an SGD optimizer over ``weights``)."""
    gradients = [torch.zeros_like(w) if w.grad is None else w.grad.detach() for w in weights]
    if w_optimizer is None:
        return gradients
    group = w_optimizer.param_groups[0]
    momentum, weight_decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
    directions = []
    for w, g in zip(weights, gradients):
        buffer = w_optimizer.state.get(w, {}).get("momentum_buffer")
        direction = g + weight_decay * w.detach()
        directions.append(direction if buffer is None else direction + momentum * buffer)
    return directions


def unrolled_arch_gradient(
    network: Supernet,
    loss_fn: LossFn,
    weights_batch: Batch,
    arch_batch: Batch,
    xi: float,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    mean_across_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    w_optimizer: torch.optim.Optimizer | None = None,
    skip_unused_gradients: bool = True,
) -> None:
    """Set ``α.grad`` to the second-order DARTS gradient of L_val(w', α) with w' = w − ξ d (``virtual_step_direction``:
    the official form with ``w_optimizer``, the paper's without):

        ∇α L_val(w', α) − ξ (∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / (2ε),
        w± = w ± ε ∇w' L_val(w', α),  ε = 0.01 / ‖∇w' L_val(w', α)‖.

    (μ·b and λw do not depend on α, so the Hessian-vector term is the same in both forms.) ``backward`` computes the
    gradients of L_train(w) and L_val(w') (DDP averages them under Lightning); the finite-difference term is computed
    locally and averaged by ``mean_across_ranks``. The weights are restored exactly; ``w.grad`` is left holding
    ∇w' L_val and must be cleared before the weight step.

    The two finite-difference passes record the weights as constants (only α's gradient is taken), and with
    ``skip_unused_gradients`` (not under DDP, whose reducer expects every gradient) the virtual step's pass records
    α as one: the same numbers for less backward work and fewer saved activations.
    """
    weights, alphas = network.weight_parameters(), network.arch_parameters()
    original = [w.detach().clone() for w in weights]

    def zero_grad() -> None:
        for p in [*weights, *alphas]:
            p.grad = None

    zero_grad()
    backward(loss_fn(weights_batch, alpha_grad=not skip_unused_gradients))
    with torch.no_grad():
        for w, d in zip(weights, virtual_step_direction(weights, w_optimizer)):
            w.sub_(xi * d)
    zero_grad()
    backward(loss_fn(arch_batch))
    direct = [cast(torch.Tensor, a.grad).detach().clone() for a in alphas]  # every α is in the loss
    v = [torch.zeros_like(w) if w.grad is None else w.grad.detach().clone() for w in weights]
    epsilon = 0.01 / torch.cat([g.flatten() for g in v]).norm()

    def arch_gradient_at(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            for w, w0, g in zip(weights, original, v):
                w.copy_(w0 + sign * epsilon * g)
        return list(torch.autograd.grad(loss_fn(weights_batch, weight_grad=False), alphas))

    plus, minus = arch_gradient_at(1.0), arch_gradient_at(-1.0)
    with torch.no_grad():
        for w, w0 in zip(weights, original):
            w.copy_(w0)
        for a, d, gp, gm in zip(alphas, direct, plus, minus):
            a.grad = d - xi * mean_across_ranks((gp - gm) / (2 * epsilon))
