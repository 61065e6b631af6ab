"""Every registered space honours the interface strategies search through, and offers the one-shot networks it says
it offers (and refuses the others in one line)."""

from __future__ import annotations

import importlib
import pkgutil
import random

import pytest
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.spaces import HOOKS, SPACES, SearchSpace, create_space, spaces_offering


def test_every_space_of_the_package_is_registered_and_an_unknown_name_lists_them() -> None:
    package = importlib.import_module("lightning_nas.spaces")
    modules = [importlib.import_module(info.name)
               for info in pkgutil.walk_packages(package.__path__, "lightning_nas.spaces.")]
    defined = {cls.name: cls for module in modules for cls in vars(module).values()
               if isinstance(cls, type) and issubclass(cls, SearchSpace) and "name" in vars(cls)}
    assert len(defined) >= 5 and all(SPACES.get(name) is cls for name, cls in defined.items())
    with pytest.raises(ConfigError) as refused:
        create_space("nope")
    registered = ", ".join(sorted(SPACES))
    assert str(refused.value).startswith(f"unknown search space 'nope'; registered spaces: {registered}, ")


@pytest.mark.parametrize("name", sorted(SPACES))
def test_space_interface(name: str) -> None:
    space, rng = create_space(name), random.Random(0)
    for _ in range(5):
        arch = space.sample(rng)
        assert space.key(space.from_string(space.to_string(arch))) == space.key(arch)
        assert space.key(space.from_json(space.to_json(arch))) == space.key(arch)
        assert space.key(space.decode(space.decisions(arch))) == space.key(arch)
        assert len(space.encode(arch)) == sum(space.choices())
        child = space.mutate(arch, rng)
        assert space.key(child) != space.key(arch)
        space.decisions(child)  # a valid architecture of the space
        neighbours = space.neighbours(arch)
        assert neighbours and space.key(arch) not in {space.key(n) for n in neighbours}
        for neighbour in neighbours:  # one decision away (PNAS's canonical form may renumber blocks: checked by key)
            edits = sum(a != b for a, b in zip(space.decisions(neighbour), space.decisions(arch)))
            assert edits == 1 or name == "pnas"
    network = space.build(arch, num_classes=7, in_chans=3, **space.sized(8, 1))
    assert network(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_parameter_budget_restricts_every_proposal() -> None:
    space = create_space("nb201").with_budget(0.5e6)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(50)]
    archs += [space.mutate(arch, rng) for arch in archs] + space.neighbours(archs[0])
    counts = [SearchSpace.num_params(space, arch, 10, 3, C=16, N=5) for arch in archs]  # built on the meta device
    assert max(counts) <= 0.5e6
    unrestricted = create_space("nb201")
    largest = max(SearchSpace.num_params(unrestricted, unrestricted.sample(rng), 10, 3, C=16, N=5) for _ in range(50))
    assert largest > 0.5e6
    with pytest.raises(ConfigError, match="has at most 1000 parameters; raise max_params"):
        create_space("nb201").with_budget(1000).sample(rng)


@pytest.mark.parametrize("max_params", [0, -5, float("nan"), float("inf")])
def test_a_parameter_budget_that_is_no_positive_number_is_refused_at_once(max_params: float) -> None:
    with pytest.raises(ConfigError, match=f"max_params={max_params}: give a positive number of parameters"):
        create_space("darts").with_budget(max_params)


def test_each_space_offers_the_one_shot_networks_it_overrides() -> None:
    assert {"darts", "nb201"} <= set(spaces_offering("mixture_supernet"))
    assert {"enas_micro", "enas_macro", "nb201"} <= set(spaces_offering("shared_child"))
    assert not SPACES["pnas"].offers("mixture_supernet") and not SPACES["pnas"].offers("shared_child")
    assert not SPACES["darts"].offers("shared_child") and not SPACES["enas_micro"].offers("mixture_supernet")
    assert "pnas" in spaces_offering("progressive") and not SPACES["nb201"].offers("progressive")


ARGUMENTS = {"mixture_supernet": (10, 3), "shared_child": (10, 3), "progressive": ()}
"""What each hook of HOOKS is called with: the one-shot networks take num_classes and in_chans, growth nothing."""


@pytest.mark.parametrize("hook", sorted(HOOKS))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_a_one_shot_network_a_space_lacks_is_refused_in_one_line_naming_the_spaces_that_have_one(name: str,
                                                                                                 hook: str) -> None:
    if SPACES[name].offers(hook):
        return
    with pytest.raises(ConfigError) as refused:
        getattr(create_space(name), hook)(*ARGUMENTS[hook])
    assert str(refused.value) == f"the {name} space has no {HOOKS[hook]}; spaces that have one: " + ", ".join(
        spaces_offering(hook))


SMALL = {"enas_macro": {"layers": 3}}
"""Space options that make a small shared child: the macro space's depth is its own."""


@pytest.mark.parametrize("name", spaces_offering("shared_child"))
def test_every_shared_child_runs_along_a_drawn_architectures_decisions(name: str) -> None:
    """Only the options the decisions pick get a gradient: two architectures differing in one decision train different
    weights there."""
    torch.manual_seed(0)
    space, rng = create_space(name, **SMALL.get(name, {})), random.Random(0)
    child = space.shared_child(7, 1, C=4, layers=3)
    decisions = space.decisions(space.sample(rng))
    logits = child(torch.randn(2, 1, 16, 16), path=decisions)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    trained = {id(p) for p in child.weight_parameters() if p.grad is not None}
    assert trained and len(trained) < len(child.weight_parameters())  # a path, not the whole child
