import torch
import torch.nn.functional as F
from torch.func import functional_call

from lightning_nas.spaces.darts import SearchNetwork
from lightning_nas.strategies.darts_architect import unrolled_arch_gradient


def exact_unrolled_gradient(network, weights_batch, arch_batch, xi, optimizer=None):
    """d/dα L_val(w', α) by double backward through the virtual step, written out by hand: w' = w − ξ ∇w L_train(w, α)
    (the paper), or with ``optimizer`` w' = w − ξ (μ·b + ∇w L_train(w, α) + λw) read from its real momentum buffers b
    (the official code)."""
    params = dict(network.named_parameters())
    weight_names = [name for name in params if not name.startswith("alpha_")]

    def loss(values, batch):
        x, y = batch
        return F.cross_entropy(functional_call(network, values, (x,)), y)

    grads = torch.autograd.grad(loss(params, weights_batch), [params[n] for n in weight_names], create_graph=True)
    steps = dict(zip(weight_names, grads))
    if optimizer is not None:
        momentum, weight_decay = optimizer.defaults["momentum"], optimizer.defaults["weight_decay"]
        for name in weight_names:
            buffer = optimizer.state[params[name]]["momentum_buffer"]
            steps[name] = momentum * buffer + steps[name] + weight_decay * params[name].detach()
    unrolled = {**params, **{n: params[n] - xi * steps[n] for n in weight_names}}
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss(unrolled, arch_batch), network.arch_parameters())])


def smooth_search_network() -> SearchNetwork:
    """A tiny float64 supernet whose loss is smooth: Softplus for ReLU and no max pooling, since a finite difference
    across a kink is wrong whatever the formula. Then the official ε = 0.01 / ‖v‖ is accurate to O(ε²)."""
    primitives = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    network = SearchNetwork(C=2, layers=3, num_classes=3, in_chans=1, nodes=2, primitives=primitives).double()
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Softplus())
    return network


def batches() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return tuple((torch.randn(6, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (6,))) for _ in range(2))


def estimate(network, weights_batch, arch_batch, xi, optimizer=None, skip_unused_gradients=True) -> torch.Tensor:
    def loss_fn(batch, alpha_grad=True, weight_grad=True):
        return F.cross_entropy(network(batch[0], alpha_grad, weight_grad), batch[1])

    unrolled_arch_gradient(network, loss_fn, weights_batch, arch_batch, xi, w_optimizer=optimizer,
                           skip_unused_gradients=skip_unused_gradients)
    return torch.cat([a.grad.flatten() for a in network.arch_parameters()])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_second_order_alpha_gradient_matches_exact_autograd():
    torch.manual_seed(0)
    network = smooth_search_network()
    weights_batch, arch_batch = batches()
    xi = 0.5
    exact = exact_unrolled_gradient(network, weights_batch, arch_batch, xi)
    before = [w.detach().clone() for w in network.weight_parameters()]
    error = relative(estimate(network, weights_batch, arch_batch, xi), exact)
    assert error < 1e-2

    # The Hessian-vector term matters here (the first-order gradient is far off), so the check has teeth: the buggy
    # port's ε/2 in place of 1/(2ε) would miss by about as much as first order.
    for p in network.parameters():
        p.grad = None
    F.cross_entropy(network(arch_batch[0]), arch_batch[1]).backward()
    first_order = torch.cat([a.grad.flatten() for a in network.arch_parameters()])
    assert relative(first_order, exact) > 10 * error
    # The weights are restored exactly.
    assert all(torch.equal(w, b) for w, b in zip(network.weight_parameters(), before))


def test_official_virtual_step_uses_the_weight_optimizers_momentum_buffers_and_weight_decay():
    torch.manual_seed(0)
    network = smooth_search_network()
    weights_batch, arch_batch = batches()
    xi = 0.5
    optimizer = torch.optim.SGD(network.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=0.0)
    # Before the optimizer's first step its buffers are empty: without weight decay both forms are the same step.
    torch.testing.assert_close(estimate(network, weights_batch, arch_batch, xi, optimizer),
                               estimate(network, weights_batch, arch_batch, xi), rtol=1e-12, atol=0)

    optimizer = torch.optim.SGD(network.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(3):  # fill the momentum buffers with real SGD steps
        optimizer.zero_grad()
        F.cross_entropy(network(weights_batch[0]), weights_batch[1]).backward()
        optimizer.step()
    exact = exact_unrolled_gradient(network, weights_batch, arch_batch, xi, optimizer)
    official = estimate(network, weights_batch, arch_batch, xi, optimizer)
    error = relative(official, exact)
    assert error < 1e-2
    # Once the buffers are full, the paper's step gives another gradient, far beyond the estimate's error.
    paper = estimate(network, weights_batch, arch_batch, xi)
    assert relative(paper, exact) > 10 * error
    torch.testing.assert_close(paper, exact_unrolled_gradient(network, weights_batch, arch_batch, xi), rtol=2e-2,
                               atol=1e-6)


def test_skipping_the_unused_gradients_gives_the_same_alpha_gradient():
    """The passes that record α or the weights as constants (as DARTS runs them outside DDP) change no number: a
    constant that wrongly stopped a gradient path would show here."""
    torch.manual_seed(0)
    network = smooth_search_network()
    weights_batch, arch_batch = batches()
    optimizer = torch.optim.SGD(network.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    lean = estimate(network, weights_batch, arch_batch, 0.5, optimizer)
    full = estimate(network, weights_batch, arch_batch, 0.5, optimizer, skip_unused_gradients=False)
    torch.testing.assert_close(lean, full, rtol=1e-10, atol=0)
    assert lean.abs().max() > 1e-3
