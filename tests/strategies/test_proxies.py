"""Zero-cost proxies against closed forms and hand computations on tiny networks, and on every registered space."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces import SPACES, create_space
from lightning_nas.strategies.proxies import (
    JACOB_COV_K,
    NOISE,
    PROXIES,
    NetworkShape,
    ProxyEvaluator,
    data_proxies,
    fit_images,
    hamming_kernel,
    jacob_cov_score,
    naswot_score,
    proxy_batch,
    proxy_names,
    score_architecture,
    synflow,
)

TINY = NetworkShape(num_classes=10, in_chans=3, C=4, N=1, input_size=(8, 8))


def chain(*widths: int, bn: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b, bias=False), *([nn.BatchNorm1d(b)] if bn else []), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_synflow_of_a_linear_chain_is_its_layer_count_times_the_product_of_absolute_weights() -> None:
    net = chain(5, 4, 3)
    w1, w2 = (layer.weight.detach().double().abs() for layer in (net[0], net[2]))
    flow = float(torch.ones(3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(5, dtype=torch.float64))
    assert any((layer.weight < 0).any() for layer in (net[0], net[2]))  # the abs matters here
    assert synflow(net, (5,)) == pytest.approx(2 * flow, rel=1e-12)  # every layer carries the whole flow
    with_bn = chain(5, 4, 3, bn=True)  # BatchNorm is removed (the authors' bn=False): the same flow
    assert synflow(with_bn, (5,)) == pytest.approx(2 * flow, rel=1e-12)
    assert net[0].weight.dtype == torch.float32 and (net[0].weight < 0).any()  # the network itself is untouched
    assert synflow(net, (5,), in_place=True) == pytest.approx(2 * flow, rel=1e-12)  # in place: the same, changed
    assert net[0].weight.dtype == torch.float64 and not (net[0].weight < 0).any()
    assert synflow(chain(5, 4, 3, 3), (5,)) != pytest.approx(2 * flow)  # negative control: another chain differs


def test_snip_and_grad_norm_by_hand() -> None:
    net = chain(3, 4, 2)
    torch.manual_seed(1)
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    h = x @ w1.T
    a = h.clamp(min=0)
    d_logits = (F.softmax(a @ w2.T, 1) - F.one_hot(y, 2)) / len(x)  # ∂ mean cross-entropy / ∂ logits
    g2 = d_logits.T @ a
    g1 = ((d_logits @ w2) * (h > 0)).T @ x
    scores = data_proxies(net, (x, y), ["snip", "grad_norm"])
    assert scores["snip"] == pytest.approx(float((w1 * g1).abs().sum() + (w2 * g2).abs().sum()), rel=1e-5)
    assert scores["grad_norm"] == pytest.approx(float(g1.norm() + g2.norm()), rel=1e-5)
    assert scores["grad_norm"] > float(torch.cat([g1.flatten(), g2.flatten()]).norm())  # per-layer norms, summed


def test_jacob_cov_of_a_linear_network_has_the_closed_form_of_identical_rows() -> None:
    net = chain(5, 3)  # y = W x: every image's ∂Σy/∂x is Wᵀ1, so the correlation matrix is all ones
    x, y = torch.randn(4, 5), torch.zeros(4, dtype=torch.long)
    k = JACOB_COV_K
    expected = -((math.log(4 + k) + 1 / (4 + k)) + 3 * (math.log(k) + 1 / k))
    assert data_proxies(net, (x, y), ["jacob_cov"])["jacob_cov"] == pytest.approx(expected, rel=1e-6)
    rows = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]])  # correlation 0.6: eigenvalues 1.6 and 0.4
    assert jacob_cov_score(rows) == pytest.approx(-sum(math.log(v + k) + 1 / (v + k) for v in (1.6, 0.4)))
    assert math.isnan(jacob_cov_score(np.array([[1.0, 2.0], [3.0, 3.0]])))  # a constant row: undefined, NaN


def test_naswot_is_the_log_determinant_of_the_codes_agreement_counts() -> None:
    codes = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 0]])
    agree = torch.tensor([[3.0, 1, 1], [1, 3, 1], [1, 1, 3]])  # positions where two codes agree
    assert torch.equal(hamming_kernel(codes), agree.double())
    assert naswot_score(hamming_kernel(codes)) == pytest.approx(math.log(20.0))  # det = 27 - 3 - 3 - 3 + 1 + 1
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, -1.0], [2.0, 3.0], [-1.0, -2.0]])  # codes of the ReLU's input: 10, 11, 00
    expected = math.log(abs(float(torch.det(hamming_kernel(torch.tensor([[1, 0], [1, 1], [0, 0]]))))))
    assert data_proxies(net, (x, torch.zeros(3, dtype=torch.long)), ["naswot"])["naswot"] == pytest.approx(expected)
    assert naswot_score(hamming_kernel(torch.tensor([[1, 0], [1, 0]]))) == -math.inf  # equal codes: singular


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_registered_space_is_scored_by_every_proxy_reproducibly(name: str) -> None:
    space = create_space(name)
    arch = space.sample(random.Random(0))
    batch = proxy_batch(NOISE, 4, TINY)
    scores = score_architecture(space, arch, list(PROXIES), TINY, batch)
    assert list(scores) == list(PROXIES)
    assert scores["params"] == space.num_params(arch, 10, 3, **TINY.options(space))
    assert scores["flops"] == space.num_flops(arch, 10, 3, (8, 8), **TINY.options(space))
    assert scores["synflow"] > 0 and scores["snip"] > 0 and scores["grad_norm"] > 0
    score_architecture(space, space.sample(random.Random(1)), ["synflow", "snip"], TINY, batch)
    networked = ["synflow", "snip", "grad_norm", "jacob_cov", "naswot"]
    again = score_architecture(space, arch, networked, TINY, batch)  # another cell scored between: the same scores
    assert again == pytest.approx({name: scores[name] for name in networked}, nan_ok=True)
    reseeded = score_architecture(space, arch, ["synflow"], TINY, seed=1)["synflow"]
    assert reseeded != scores["synflow"]  # the initialisation is seeded, and the seed matters


def test_the_evaluator_scores_by_one_proxy_and_refuses_in_one_line() -> None:
    space = create_space("nb201")
    archs = [space.sample(random.Random(seed)) for seed in range(3)]
    evaluator = ProxyEvaluator(space, "params", TINY)
    assert evaluator.score(archs) == [space.num_params(a, 10, 3, C=4, N=1) for a in archs]
    with pytest.raises(ConfigError, match="proxy snip needs a batch"):
        ProxyEvaluator(space, "snip", TINY)
    with pytest.raises(ConfigError, match="unknown proxy zen; known: synflow"):
        proxy_names("synflow,zen")


def test_grey_batches_fit_a_colour_network() -> None:
    images = torch.rand(2, 1, 28, 28)
    fitted = fit_images(images, 3, (32, 32))
    assert fitted.shape == (2, 3, 32, 32) and torch.equal(fitted[:, 0], fitted[:, 2])
    assert fitted.mean().item() == pytest.approx(images.mean().item(), abs=0.02)
    with pytest.raises(ConfigError, match="images of 2 channels cannot feed a network of 3"):
        fit_images(torch.rand(1, 2, 4, 4), 3, (4, 4))
