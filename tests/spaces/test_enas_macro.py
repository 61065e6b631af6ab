"""The ENAS macro space: architecture file round trip, shared search child (the space's, run along its decisions as
along the architecture), fixed network built from an architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.spaces import create_space
from lightning_nas.spaces.enas_macro import MacroArchitecture, MacroNetwork

ARCH = MacroArchitecture(
    ops=("conv_3x3", "sep_conv_5x5", "max_pool_3x3", "conv_5x5", "avg_pool_3x3", "sep_conv_3x3"),
    skips=((), (1,), (0, 0), (1, 0, 1), (0, 0, 0, 0), (1, 1, 0, 0, 1)),
)


def test_save_load_round_trip_is_atomic_and_readable(tmp_path) -> None:
    path = Path(ARCH.save(tmp_path / "run" / "genotype.json"))
    assert MacroArchitecture.load(path) == ARCH
    assert [p.name for p in path.parent.iterdir()] == ["genotype.json"]
    text = str(ARCH)
    assert "layer 5 = sep_conv_3x3(layer 4) + skips from [0, 1, 4]" in text and "skip rate 0.40" in text


def test_invalid_macro_arch_is_rejected() -> None:
    with pytest.raises(ValueError, match="layer 2: skips must be 2"):
        MacroArchitecture(ARCH.ops, ((), (1,), (0,), *ARCH.skips[3:]))
    with pytest.raises(ValueError, match="not an ENAS macro op"):
        MacroArchitecture(("identity", *ARCH.ops[1:]), ARCH.skips)


def test_search_child_trains_only_the_chosen_op_of_each_layer() -> None:
    torch.manual_seed(0)
    child = MacroNetwork(None, C=4, num_layers=6, in_chans=1)
    child(torch.randn(2, 1, 8, 8), ARCH).sum().backward()
    for layer, branches in enumerate(child.layers):
        trained = {op for op, branch in branches.items() if branch[0].weight.grad is not None}
        assert trained == {ARCH.ops[layer]}


def test_skips_add_earlier_layer_outputs() -> None:
    torch.manual_seed(0)
    child = MacroNetwork(None, C=4, num_layers=6, in_chans=1).eval()
    x = torch.randn(2, 1, 8, 8)
    without = MacroArchitecture(ARCH.ops, ARCH.skips[:5] + ((0, 0, 0, 0, 0),))
    assert not torch.allclose(child(x, ARCH), child(x, without))


def test_fixed_network_holds_only_chosen_ops_and_doubles_channels() -> None:
    network = MacroNetwork(ARCH.to_dict(), C=4, in_chans=1)
    assert [list(branches) for branches in network.layers] == [[op] for op in ARCH.ops]
    assert network.classifier.in_features == 16
    assert network(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="needs an architecture"):
        MacroNetwork(None, C=4, num_layers=6, in_chans=1)(torch.randn(2, 1, 8, 8))


def test_uniform_arch_turns_half_the_skips_on_and_repeats_with_its_generator() -> None:
    archs = [MacroArchitecture.uniform(12, torch.Generator().manual_seed(i)) for i in range(100)]
    assert MacroArchitecture.uniform(12, torch.Generator().manual_seed(3)) == archs[3]
    assert abs(sum(arch.skip_rate() for arch in archs) / len(archs) - 0.5) < 0.03
    ops = [op for arch in archs for op in arch.ops]
    assert abs(ops.count("conv_3x3") / len(ops) - 1 / 6) < 0.03


def test_the_spaces_shared_child_runs_along_the_decisions_as_along_the_architecture() -> None:
    space = create_space("enas_macro", layers=6)
    decisions = space.decisions(ARCH)
    assert decisions == ARCH.decisions()
    assert MacroArchitecture.from_decisions(decisions) == ARCH == space.decode(decisions)
    torch.manual_seed(0)
    child = space.shared_child(10, 1, C=4, layers=6)
    torch.manual_seed(0)
    direct = MacroNetwork(None, C=4, num_layers=6, in_chans=1)  # what ENAS built before it asked the space
    assert child.state_dict().keys() == direct.state_dict().keys()
    assert sum(p.numel() for p in child.weight_parameters()) == sum(p.numel() for p in direct.parameters())
    x = torch.randn(2, 1, 8, 8)
    child.eval()
    torch.testing.assert_close(child(x, path=decisions), child(x, ARCH), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="layers=12: the enas_macro space has 6 layers, and so has its shared child"):
        space.shared_child(10, 1, layers=12)
    with pytest.raises(ConfigError, match="6 decisions make 3 layers; this space has 6"):
        space.decode(decisions[:6])
