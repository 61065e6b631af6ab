"""NAS-Bench-201: the string form, the network's size against the paper and the supernet, which the space offers as
its mixture supernet and its shared child."""

from __future__ import annotations

import random

import pytest
import timm
import torch

import lightning_nas.networks  # noqa: F401  (registers nb201 with timm)
from lightning_nas.errors import ConfigError
from lightning_nas.spaces import SearchSpace, create_space
from lightning_nas.spaces.nb201 import NB201Architecture, NB201SearchNetwork

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_string_form_round_trips_exactly() -> None:
    arch = NB201Architecture.from_string(EXAMPLE)
    assert arch.ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect")
    assert arch.to_string() == EXAMPLE
    assert NB201Architecture.from_json(arch.to_json()) == arch


@pytest.mark.parametrize("text, message", [
    (EXAMPLE.replace("avg_pool_3x3", "max_pool_3x3"), "unknown op 'max_pool_3x3'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "expected 3 nodes joined by '\\+', got 2"),
    (EXAMPLE.replace("|avg_pool_3x3~1|", "|"), "node 2 .* needs 2 edges"),
    (EXAMPLE.replace("skip_connect~2", "skip_connect~1"), "edge 'skip_connect~1' of node 3 must read node 2"),
])
def test_malformed_strings_name_the_part(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        NB201Architecture.from_string(text)
    assert "\n" not in str(error.value)


def test_network_size_matches_the_paper() -> None:
    """NAS-Bench-201 (Dong & Yang, 2020): the largest cell (all nor_conv_3x3) has 1.53 M parameters on CIFAR-10."""
    model = timm.create_model("nb201", genotype=ALL_CONV, num_classes=10)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 1.53
    space = create_space("nb201")
    arch = NB201Architecture.from_string(ALL_CONV)
    assert space.num_params(arch, 10, 3) == SearchSpace.num_params(space, arch, 10, 3, C=16, N=5) == 1_531_546
    rng = random.Random(0)
    for arch in (space.sample(rng) for _ in range(10)):  # the per-part count equals the whole network's
        assert space.num_params(arch, 10, 3, C=16, N=5) == SearchSpace.num_params(space, arch, 10, 3, N=5)


def test_timm_interface(tmp_path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text(NB201Architecture.from_string(EXAMPLE).to_json())
    model = timm.create_model("nb201", genotype=str(path), num_classes=4, C=8, N=1).eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 32, 8, 8)
    assert torch.equal(model.forward_head(features), model(x))
    model.reset_classifier(6)
    assert model(x).shape == (2, 6)
    config = timm.data.resolve_model_data_config(model)
    assert config["input_size"] == (3, 32, 32) and len(config["mean"]) == 3


def test_supernet_gradients_and_derivation() -> None:
    torch.manual_seed(0)
    net = NB201SearchNetwork(C=4, N=1, num_classes=3)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    torch.nn.functional.cross_entropy(net(x), y).backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.weight_parameters() if p.requires_grad)
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[:, 3] = 1.0  # nor_conv_3x3 strongest everywhere
        net.alpha[0, 1] = 2.0  # skip_connect on edge 1<-0
    assert net.genotype().to_string() == ALL_CONV.replace("nor_conv_3x3~0|+", "skip_connect~0|+", 1)
    assert net.genotype(max_skip_connect=0).to_string() == ALL_CONV
    net.zero_grad()
    net(x, weight_grad=False).sum().backward()  # an α step: no weight gradients
    assert net.alpha.grad is not None and all(p.grad is None for p in net.weight_parameters())


@pytest.mark.parametrize("training", [True, False])
def test_supernet_along_a_path_equals_the_supernet_with_one_hot_weights_on_it(training: bool) -> None:
    """``forward(x, path=...)`` (the weight-sharing child of ENAS and RSPS) computes what the mixed ops compute when
    softmax(α) is one-hot on the path (α = 10^4 on it: the others' weights are exactly 0 in float32), ``none`` edges
    included; α takes no part, and only the path's ops get gradients."""
    torch.manual_seed(0)
    net = NB201SearchNetwork(C=4, N=1, num_classes=3, in_chans=1).train(training)
    space = create_space("nb201")
    x, y = torch.randn(8, 1, 12, 12), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for text in (EXAMPLE, "|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"):
        arch = NB201Architecture.from_string(text)
        path = space.decisions(arch)
        with torch.no_grad():
            net.alpha.copy_(1e4 * torch.nn.functional.one_hot(torch.tensor(path), len(net.primitives)))
            mixed = net(x)
        along = net(x, path=path)
        torch.testing.assert_close(along, mixed, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(net(x, path=arch), along, rtol=0, atol=0)  # the architecture or its decisions
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x, path=path), y).backward()
    assert net.alpha.grad is None
    for cell in (layer for layer in net.cells if isinstance(layer, torch.nn.ModuleList)):
        for edge, chosen in zip(cell, path):
            for k, op in enumerate(edge.ops):
                grads = [p.grad for p in op.parameters()]
                assert all(g is None for g in grads) if k != chosen else all(g is not None for g in grads)


def test_supernet_path_of_the_wrong_length_or_op_is_a_config_error() -> None:
    net = NB201SearchNetwork(C=4, N=1, num_classes=3, primitives=("none", "skip_connect", "nor_conv_3x3"))
    with pytest.raises(ConfigError, match=r"path \[0, 1\]: give one op index in 0..2 per edge \(6 edges\)"):
        net(torch.randn(2, 3, 8, 8), path=[0, 1])
    with pytest.raises(ConfigError, match="uses avg_pool_3x3, outside the supernet's ops"):
        net(torch.randn(2, 3, 8, 8), path=NB201Architecture.from_string(EXAMPLE))


def test_a_genotype_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NAS-Bench-201 genotype 5: give a cell string"):
        timm.create_model("nb201", genotype=5)


def test_the_space_offers_its_supernet_as_mixture_supernet_and_shared_child_each_with_its_own_options() -> None:
    space = create_space("nb201")
    torch.manual_seed(0)
    mixture = space.mixture_supernet(10, 1, C=4, layers=3, partial_channels=1)  # DARTS's options at their defaults
    torch.manual_seed(0)
    child = space.shared_child(10, 1, C=4, layers=3)
    assert isinstance(mixture, NB201SearchNetwork) and isinstance(child, NB201SearchNetwork)
    assert all(torch.equal(a, b) for a, b in zip(mixture.state_dict().values(), child.state_dict().values()))
    with pytest.raises(ConfigError, match="^the nb201 supernet does not take partial_channels=2; leave "
                                          "partial_channels at the default or search the darts space$"):
        space.mixture_supernet(10, 1, partial_channels=2)
    with pytest.raises(ConfigError, match="^the nb201 shared child does not take dropout=0.1; leave dropout out$"):
        space.shared_child(10, 1, dropout=0.1)
    with pytest.raises(ConfigError, match="layers=2: the nb201 supernet needs at least 3 cells"):
        space.shared_child(10, 1, layers=2)


def test_flops_count_each_3x3_convolution_once_per_cell_at_its_stages_size() -> None:
    """One nor_conv_3x3 edge turned to none removes a C_s x C_s 3x3 convolution from every cell of every stage: 2 x 9
    x C_s^2 x H_s x W_s each, 16 channels at 32x32, 32 at 16x16 and 64 at 8x8 (4,718,592 in each stage's cells)."""
    space = create_space("nb201")
    all_conv = NB201Architecture.from_string(ALL_CONV)
    one_none = NB201Architecture(("none",) + all_conv.ops[1:])
    per_cell = [2 * 9 * c * c * size * size for c, size in ((16, 32), (32, 16), (64, 8))]
    removed = space.num_flops(all_conv, 10, 3, C=16, N=5) - space.num_flops(one_none, 10, 3, C=16, N=5)
    assert removed == 5 * sum(per_cell) == 70_778_880
    smaller = space.num_flops(all_conv, 10, 3, input_size=(16, 16), C=16, N=5)
    assert smaller < space.num_flops(all_conv, 10, 3, C=16, N=5) / 3
