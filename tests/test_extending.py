"""docs/extending.md followed to the letter: a space of the user's own with a mixture supernet and a shared child, a
black-box search method and a procedurally drawn dataset, written from inside the test into a package of a temporary
folder and named by their import paths (``package.module:Name``), then searched by every black-box method (the
benchmark on a table of the space, and the black-box recipe with proxy training), DARTS, GDAS, ENAS and RSPS, and the
found architecture trained by the train recipe. Tiny budgets: each command runs in seconds."""

from __future__ import annotations

import csv
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch

PACKAGE = "nas_extending_example"
"""The user's package: a name no other test imports."""

SPACES = '''
    """A chain of three blocks, each a 3x3 or a 1x1 convolution block that changes channels (in_chans -> width ->
    width -> 2 width): a space whose blocks live here, outside the cell ops' registry, and whose network takes an
    option of its own (``width``), with both one-shot networks."""

    import json
    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F
    from torch import nn

    from lightning_nas.errors import ConfigError
    from lightning_nas.files import write_atomic
    from lightning_nas.spaces import SearchSpace
    from lightning_nas.spaces.oneshot import frozen, gumbel_hard

    OPS = ("conv3", "conv1")
    LAYERS = 3


    @dataclass(frozen=True)
    class Chain:
        """An architecture: one op per block; its text form is the ops joined by '-'."""

        ops: tuple

        def to_dict(self):
            return {"ops": list(self.ops)}

        def save(self, path):
            return write_atomic(path, json.dumps(self.to_dict()) + "\\n")

        def __str__(self):
            return "-".join(self.ops)


    def block(op, c_in, c_out):
        """One block, changing the channels: a convolution, BN and ReLU."""
        kernel = 3 if op == "conv3" else 1
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU())


    def widths(in_chans, width):
        return [in_chans, width, width, 2 * width]


    class ChainNetwork(nn.Module):
        def __init__(self, arch, num_classes, in_chans, width):
            super().__init__()
            w = widths(in_chans, width)
            self.blocks = nn.Sequential(*(block(op, w[i], w[i + 1]) for i, op in enumerate(arch.ops)))
            self.classifier = nn.Linear(w[-1], num_classes)

        def forward(self, x):
            return self.classifier(self.blocks(x).mean((2, 3)))


    class ChainSupernet(nn.Module):
        """Every op of every block with its own weights; a mixture supernet (α, softmax-weighted sum, GDAS's one-hot
        draw) and a shared child (``path``: one op per block) at once."""

        primitives = OPS

        def __init__(self, num_classes, in_chans, width):
            super().__init__()
            w = widths(in_chans, width)
            self.choices = nn.ModuleList(nn.ModuleList(block(op, w[i], w[i + 1]) for op in OPS) for i in range(LAYERS))
            self.classifier = nn.Linear(w[-1], num_classes)
            self.alpha = nn.Parameter(1e-3 * torch.randn(LAYERS, len(OPS)))
            self.tau = None

        def arch_parameters(self):
            return [self.alpha]

        def weight_parameters(self):
            return [p for p in self.parameters() if p is not self.alpha]

        def alphas(self):
            return {"chain": self.alpha}

        def genotype(self, max_skip_connect=None):
            return Chain(tuple(OPS[i] for i in self.alpha.argmax(-1).tolist()))

        def forward(self, x, alpha_grad=True, weight_grad=True, *, path=None):
            if not weight_grad:
                with frozen(self.weight_parameters()):
                    return self(x, alpha_grad, path=path)
            if path is not None:
                for layer, option in zip(self.choices, path):
                    x = layer[option](x)
                return self.classifier(x.mean((2, 3)))
            weights = F.softmax(self.alpha, -1) if self.tau is None else gumbel_hard(self.alpha, self.tau)[0]
            weights = weights if alpha_grad else weights.detach()
            for layer, w in zip(self.choices, weights):
                x = sum(w_o * op(x) for w_o, op in zip(w, layer))
            return self.classifier(x.mean((2, 3)))


    DARTS_DEFAULTS = {"stem_multiplier": 3, "partial_channels": 1, "checkpoint_cells": 0, "recompute_ops": False}


    class ChainSpace(SearchSpace):
        name = "chain"

        def choices(self):
            return (len(OPS),) * LAYERS

        def decisions(self, arch):
            return tuple(OPS.index(op) for op in arch.ops)

        def decode(self, decisions):
            return Chain(tuple(OPS[d] for d in decisions))

        def to_json(self, arch):
            return json.dumps(arch.to_dict())

        def from_json(self, text):
            return self.from_string("-".join(json.loads(text)["ops"]))

        def to_string(self, arch):
            return str(arch)

        def from_string(self, text):
            ops = tuple(text.split("-"))
            if len(ops) != LAYERS or not set(ops) <= set(OPS):
                raise ConfigError(f"{text!r} is not {LAYERS} of {', '.join(OPS)} joined by '-'")
            return Chain(ops)

        def build(self, arch, num_classes, in_chans, width=8):
            return ChainNetwork(arch, num_classes, in_chans, width)

        def mixture_supernet(self, num_classes, in_chans, C=8, layers=LAYERS, **options):
            unsupported = {k: v for k, v in options.items() if DARTS_DEFAULTS.get(k, object()) != v}
            if unsupported or layers != LAYERS:
                raise ConfigError(f"the chain supernet takes C and layers={LAYERS}, not {unsupported or layers}")
            return ChainSupernet(num_classes, in_chans, C)

        def shared_child(self, num_classes, in_chans, C=8, layers=LAYERS, **options):
            if options or layers != LAYERS:
                raise ConfigError(f"the chain shared child takes C and layers={LAYERS}")
            return ChainSupernet(num_classes, in_chans, C)
'''

SEARCH = '''
    """A search method of the user's own: coordinate ascent, each decision in turn set to its best option."""

    import random


    def coordinate(space, evaluations, seed, **options):
        rng = random.Random(seed)
        best = list(space.decisions(space.sample(rng)))
        best_score = evaluations([space.decode(best)])[0][1]
        while not evaluations.done:
            for d, n in enumerate(space.choices()):
                for option in range(n):
                    trial = best[:d] + [option] + best[d + 1:]
                    scored = evaluations([space.decode(trial)])
                    if evaluations.done or not scored:
                        return
                    if scored[0][1] > best_score:
                        best, best_score = trial, scored[0][1]
'''

DATA = '''
    """A dataset of the user's own, drawn procedurally: 8x8 grey images of horizontal or vertical stripes in noise."""

    import torch
    from torch.utils.data import TensorDataset

    from lightning_nas.data import NASDataModule


    class Stripes(NASDataModule):
        num_classes = 2
        input_size = (1, 8, 8)  # in_chans is read from here
        mean, std = (0.5,), (0.5,)

        def __init__(self, mode="eval", batch_size=32, val_split=0, seed=0, images=192, num_workers=0):
            super().__init__(mode=mode, batch_size=batch_size, val_split=val_split, seed=seed, num_workers=num_workers)
            self.images = images  # the resume fingerprint reads each init argument from the attribute of its name

        def draw(self, seed):
            g = torch.Generator().manual_seed(seed)
            labels = torch.randint(2, (self.images,), generator=g)
            stripes = ((torch.arange(8) + torch.randint(2, (self.images, 1), generator=g)) % 2).float()
            rows, columns = stripes[:, :, None].expand(-1, 8, 8), stripes[:, None, :].expand(-1, 8, 8)
            images = torch.where(labels[:, None, None] == 0, rows, columns) + 0.3 * torch.randn(self.images, 8, 8,
                                                                                             generator=g)
            return TensorDataset(images[:, None], labels)

        def make_train_set(self, train):
            return self.draw(0)

        def make_test_set(self):
            return self.draw(1)
'''

SPACE, METHOD, DATASET = f"{PACKAGE}.spaces:ChainSpace", f"{PACKAGE}.search:coordinate", f"{PACKAGE}.data:Stripes"
TINY_TRAINER = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The user's package in a folder of its own, on the path for this test and forgotten after it."""
    package = tmp_path / "user" / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, source in (("spaces", SPACES), ("search", SEARCH), ("data", DATA)):
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.chdir(tmp_path)
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def test_the_users_space_builds_channel_changing_blocks_with_its_own_network_options(user_package) -> None:
    from lightning_nas.errors import ConfigError
    from lightning_nas.spaces import create_space
    from lightning_nas.strategies.candidates import ProxyBudget

    space = create_space(SPACE)
    arch = space.from_string("conv3-conv1-conv3")
    assert space.network_options() == {"width": 8}
    # conv3 1->8, conv1 8->8, conv3 8->16 (weights and BN), linear 16->2
    assert space.num_params(arch, 2, 1) == 72 + 16 + 64 + 16 + 1152 + 32 + 34
    assert space.num_params(arch, 2, 1, width=4) == 36 + 8 + 16 + 8 + 288 + 16 + 18
    assert ProxyBudget(N=1, F=4, network_options={"width": 4}).network(space) == {"width": 4}  # F, N not taken
    assert space.sized(16, 5) == {"width": 8}
    with pytest.raises(ConfigError, match=f"^the {re.escape(SPACE)} network does not take C; its options: width$"):
        space.num_params(arch, 2, 1, C=4)
    child = space.shared_child(2, 1, C=4)
    x = torch.randn(2, 1, 8, 8)
    assert child(x, path=space.decisions(arch)).shape == (2, 2)


@pytest.mark.slow
def test_every_command_runs_on_the_users_space_method_and_data(user_package, tmp_path: Path) -> None:
    from lightning_nas.benchmark.__main__ import main as benchmark
    from lightning_nas.recipes import blackbox, darts, enas, rsps, train
    from lightning_nas.spaces import create_space
    from lightning_nas.strategies.blackbox import METHODS

    space = create_space(SPACE)
    archs = [space.decode((a, b, c)) for a in range(2) for b in range(2) for c in range(2)]
    table = tmp_path / "chain.csv"
    scores = {str(arch): 50.0 + index for index, arch in enumerate(archs)}
    scores["conv1-conv3-conv1"] = 99.0  # the planted best
    with open(table, "w", newline="") as file:
        csv.writer(file).writerows([("arch", "score"), *scores.items()])
    proxies = tmp_path / "proxies.csv"  # a zero-cost proxy for the methods that rank by one: the score itself
    with open(proxies, "w", newline="") as file:
        csv.writer(file).writerows([("arch", "planted"), *scores.items()])
    # the benchmark: every black-box method of the table and the user's own, on a table of the user's space
    methods = [*METHODS, METHOD]
    benchmark(["--space", SPACE, "--table", str(table), "--strategies", ",".join(methods), "--queries", "8",
               "--runs", "2", "--proxy", "planted", "--proxy-table", str(proxies),
               "--json", str(tmp_path / "benchmark.json")])
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(result["strategies"]) == set(methods) and result["table_best"] == 99.0
    assert result["strategies"][METHOD]["8"]["optimum_hits"] == 2  # coordinate ascent reaches it from any start
    # the black-box recipe, proxy training on the user's data, by every method (the width through network_options)
    for method in methods:
        out = tmp_path / "blackbox" / method.replace(":", "_")
        blackbox.main(["fit", "--config", "random_digits", "--method", method, "--space", SPACE, "--data", DATASET,
                       "--data.init_args.val_split", "64", "--output_dir", str(out), "--num_samples", "2",
                       "--epochs", "1", "--limit_train_batches", "2", "--num_threads", "1",
                       "--network_options", '{"width": 4}',
                       *(["--proxy", "params"] if method in METHODS and METHODS[method].needs_proxy else [])])
        found = json.loads((out / "genotype.json").read_text())
        assert "-".join(found["ops"]) in scores
        assert len((out / "results.jsonl").read_text().splitlines()) == 2, method  # two proxy networks trained
        assert json.loads((out / "results.fingerprint.json").read_text())["network_options"] == {"width": 4}
    # the one-shot strategies on the user's supernet and shared child
    search_data = ["--data", DATASET, "--data.init_args.mode", "search", "--data.init_args.val_split", "64",
                   "--seed_everything", "0"]
    for name, main, extra in [
        ("darts", darts.main, ["--config", "darts_digits", "--model.C", "4", "--model.layers", "3",
                               "--model.arch_warmup_epochs", "0"]),
        ("gdas", darts.main, ["--config", "darts_digits", "--model.C", "4", "--model.layers", "3",
                              "--model.arch_warmup_epochs", "0", "--model.sampler", "gumbel"]),
        ("enas", enas.main, ["--config", "enas_nb201_fmnist", "--model.C", "4", "--model.controller_steps", "2",
                             "--model.controller_aggregate", "1", "--model.derive_samples", "2",
                             "--model.derive_batches", "1", "--model.compare_samples", "2",
                             "--model.channels_last", "false"]),
        ("rsps", rsps.main, ["--config", "rsps_nb201_fmnist", "--model.C", "4", "--model.eval_samples", "2",
                             "--model.eval_batches", "1"]),
    ]:
        root = tmp_path / name
        main(["fit", *extra, "--model.space", SPACE, *search_data, *TINY_TRAINER,
              "--trainer.default_root_dir", str(root)])
        genotype = next(root.glob("**/genotype.json"))
        assert "-".join(json.loads(genotype.read_text())["ops"]) in scores, name
    # the train recipe trains what DARTS found, in the space's own network
    found = next((tmp_path / "darts").glob("**/genotype.json"))
    train.main(["fit", "--config", "train_digits", "--model.space", SPACE, "--model.genotype", str(found),
                "--model.auxiliary_weight", "0", "--model.drop_path_prob", "0", "--model.network_options",
                '{"width": 4}', "--data", DATASET, *TINY_TRAINER, "--trainer.limit_val_batches", "1",
                "--trainer.default_root_dir", str(tmp_path / "train")])
    checkpoint = torch.load(next((tmp_path / "train").glob("**/last.ckpt")), weights_only=True)
    assert checkpoint["hyper_parameters"]["network_options"] == {"width": 4}
    assert checkpoint["state_dict"]["network.classifier.weight"].shape == (2, 8)  # 2 x width 4
