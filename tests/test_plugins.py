"""Plug-ins from a module outside the package (issue 42): a search space, a black-box search method and a data module
that the test writes into its own folder, named by their import paths (``package.module:Name``) in the commands a
user types, each run in a fresh process with that folder on PYTHONPATH; and what a path that is not there says."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = "nas_plugin_example"
"""The user's package: a name no other test imports."""

SPACES = '''
    """A space of the user's own: a chain of three layers, each a 3x3 or a 1x1 convolution (8 architectures)."""

    import json

    from torch import nn

    from lightning_nas.errors import ConfigError
    from lightning_nas.spaces import SearchSpace

    OPS = ("conv3", "conv1")


    class ChainSpace(SearchSpace):
        name = "chain"

        def choices(self):
            return (len(OPS),) * 3

        def decisions(self, arch):
            return tuple(OPS.index(op) for op in arch)

        def decode(self, decisions):
            return tuple(OPS[d] for d in decisions)

        def to_json(self, arch):
            return json.dumps({"ops": list(arch)})

        def from_json(self, text):
            return self.from_string("-".join(json.loads(text)["ops"]))

        def to_string(self, arch):
            return "-".join(arch)

        def from_string(self, text):
            ops = tuple(text.split("-"))
            if len(ops) != 3 or not set(ops) <= set(OPS):
                raise ConfigError(f"{text!r} is not three of {', '.join(OPS)} joined by '-'")
            return ops

        def build(self, arch, num_classes, in_chans, C, N):
            layers, channels = [], in_chans
            for op in arch:
                layers += [nn.Conv2d(channels, C, 3 if op == "conv3" else 1, padding="same"), nn.ReLU()]
                channels = C
            return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, num_classes))
'''

SEARCH = '''
    """A search method of the user's own: every architecture in the order of its decisions."""

    import itertools


    def in_order(space, evaluations, seed, **options):
        for decisions in itertools.product(*(range(n) for n in space.choices())):
            if evaluations.done:
                return
            evaluations([space.decode(decisions)])
'''

DATA = '''
    """A data module of the user's own: the embedded digits under another name."""

    from lightning_nas.data import DigitsDataModule


    class TinyDigits(DigitsDataModule):
        pass
'''

IN_ORDER = ["-".join(ops) for ops in [(a, b, c) for a in ("conv3", "conv1") for b in ("conv3", "conv1")
                                      for c in ("conv3", "conv1")]]
"""The chain space's architectures in the order ``in_order`` proposes them."""


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """The folder holding the user's package: ``spaces``, ``search`` and ``data`` modules."""
    package = tmp_path / "user" / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, source in (("spaces", SPACES), ("search", SEARCH), ("data", DATA)):
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    return package.parent


def run(args: list[str], user_folder: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` in a fresh process that finds the user's package on PYTHONPATH."""
    path = os.pathsep.join([str(user_folder), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_the_benchmark_runs_a_space_and_a_search_of_the_users_own(tmp_path: Path, user_folder: Path) -> None:
    table = tmp_path / "chain.csv"
    scores = {arch: 50.0 + index for index, arch in enumerate(IN_ORDER)}
    scores["conv3-conv1-conv3"] = 99.0  # the planted best, sixth in order
    with open(table, "w", newline="") as file:
        csv.writer(file).writerows([("arch", "score"), *scores.items()])
    done = run(["lightning_nas.benchmark", "--space", f"{PACKAGE}.spaces:ChainSpace", "--table", str(table),
                "--strategies", f"{PACKAGE}.search:in_order,evolution", "--queries", "8", "--runs", "2",
                "--json", str(tmp_path / "r.json")], user_folder, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["table_best"] == 99.0 and result["space"] == f"{PACKAGE}.spaces:ChainSpace"
    ours = result["strategies"][f"{PACKAGE}.search:in_order"]["8"]
    assert ours["mean"] == 99.0 and ours["optimum_hits"] == 2
    running_best = [max(scores[arch] for arch in IN_ORDER[:n + 1]) for n in range(8)]  # the user's order, seen
    assert result["curves"][f"{PACKAGE}.search:in_order"]["mean"] == running_best


@pytest.mark.slow
def test_a_table_of_the_users_space_is_built_on_the_users_data(tmp_path: Path, user_folder: Path) -> None:
    table = tmp_path / "chain.csv"
    done = run(["lightning_nas.benchmark", "build", "--space", f"{PACKAGE}.spaces:ChainSpace", "--data",
                f"{PACKAGE}.data:TinyDigits", "--cells", "2", "--output", str(table), "--workers", "1", "--steps", "2",
                "--batch-size", "16", "--heldout", "50", "--C", "4", "--N", "1"], user_folder, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(table, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 and all(row["arch"] in IN_ORDER for row in rows)
    fingerprint = json.loads((tmp_path / "chain.results.fingerprint.json").read_text())
    assert fingerprint["space"] == f"{PACKAGE}.spaces:ChainSpace"
    assert fingerprint["budget"]["data"] == f"{PACKAGE}.data:TinyDigits"
    assert fingerprint["data"]["class"] == f"{PACKAGE}.data.TinyDigits"


@pytest.mark.slow
def test_the_black_box_recipe_trains_the_users_space_by_the_users_method_on_the_users_data(
    tmp_path: Path, user_folder: Path
) -> None:
    out = tmp_path / "search"
    done = run(["lightning_nas.recipes.blackbox", "fit", "--config", "random_digits", "--output_dir", str(out),
                "--method", f"{PACKAGE}.search:in_order", "--space", f"{PACKAGE}.spaces:ChainSpace",
                "--num_samples", "2", "--F", "4", "--epochs", "1", "--limit_train_batches", "2", "--num_threads", "1",
                "--data", f"{PACKAGE}.data:TinyDigits", "--data.init_args.val_split", "100"], user_folder, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert ["-".join(record["genotype"]["ops"]) for record in records] == IN_ORDER[:2]  # the user's method's order
    assert json.loads((out / "genotype.json").read_text())["ops"] in [r["genotype"]["ops"] for r in records]
    fingerprint = json.loads((out / "results.fingerprint.json").read_text())
    assert fingerprint["data"]["class"] == f"{PACKAGE}.data.TinyDigits"
    assert fingerprint["strategy"] == f"{PACKAGE}.search:in_order"


@pytest.mark.slow
def test_the_train_recipe_trains_and_tests_an_architecture_of_the_users_space(tmp_path: Path,
                                                                              user_folder: Path) -> None:
    """The checkpoint names the space by its import path, so the test run rebuilds the network from it."""
    done = run(["lightning_nas.recipes.train", "fit", "--config", "train_digits", "--model.space",
                f"{PACKAGE}.spaces:ChainSpace", "--model.genotype", "conv3-conv1-conv3", "--model.C", "4",
                "--model.layers", "3", "--model.auxiliary_weight", "0", "--model.drop_path_prob", "0",
                "--data", f"{PACKAGE}.data:TinyDigits", "--trainer.max_epochs", "1",
                "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs")],
               user_folder, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    test_command = done.stdout.split("test it: python -m ")[1].split()
    tested = run([*test_command, "--trainer.limit_test_batches", "1"], user_folder, tmp_path)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert "test/top1" in tested.stdout


@pytest.fixture
def user_package(user_folder: Path, monkeypatch: pytest.MonkeyPatch):
    """The user's package importable in this process, and forgotten after the test."""
    monkeypatch.syspath_prepend(str(user_folder))
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


@pytest.mark.parametrize("name, message", [
    (f"{PACKAGE}.spaces:ChainSpace", None),
    (f"{PACKAGE}.spaces:Chain", f"search space '{PACKAGE}.spaces:Chain': module {PACKAGE}.spaces has no 'Chain' "
                                "(expected package.module:Name)"),
    (f"{PACKAGE}.nospaces:ChainSpace", f"search space '{PACKAGE}.nospaces:ChainSpace': no module named "
                                       f"'{PACKAGE}.nospaces' (expected package.module:Name, its folder on PYTHONPATH "
                                       "or installed)"),
    (f"{PACKAGE}.spaces:OPS", f"search space '{PACKAGE}.spaces:OPS' is ('conv3', 'conv1'), not a subclass of "
                              "lightning_nas.spaces.SearchSpace"),
    (f"{PACKAGE}.spaces:ChainSpace:x", f"search space '{PACKAGE}.spaces:ChainSpace:x': expected an import path of "
                                       "the form package.module:Name"),
    ("chain", "unknown search space 'chain'; registered spaces: {registered}, or a space of your own by its import "
              "path, package.module:Name"),
])
def test_a_space_by_import_path_is_built_or_refused_in_one_line(user_package: None, name: str,
                                                                message: str | None) -> None:
    from lightning_nas.errors import ConfigError
    from lightning_nas.spaces import SPACES, create_space

    if message is None:
        space = create_space(name)
        assert space.name == name and space.from_string("conv1-conv1-conv3") == ("conv1", "conv1", "conv3")
        return
    with pytest.raises(ConfigError) as error:
        create_space(name)
    assert str(error.value) == message.replace("{registered}", ", ".join(sorted(SPACES)))


def test_a_search_method_or_data_module_that_is_not_there_ends_the_recipe_in_one_line(
    tmp_path: Path, user_package: None
) -> None:
    from lightning_nas.recipes import blackbox

    args = ["fit", "--config", "random_digits", "--output_dir", str(tmp_path / "search"), "--num_samples", "2"]
    for extra, message in [
        (["--method", f"{PACKAGE}.search:out_of_order"], f"error: search method '{PACKAGE}.search:out_of_order': "
                                                         f"module {PACKAGE}.search has no 'out_of_order'"),
        (["--method", f"{PACKAGE}.spaces:OPS"], f"error: search method '{PACKAGE}.spaces:OPS' is a tuple, not a "
                                                "function taking (space, evaluations, seed, **options)"),
        (["--method", f"{PACKAGE}.spaces:ChainSpace.build"],
         f"error: search method '{PACKAGE}.spaces:ChainSpace.build' takes (self, arch, num_classes, in_chans, C, N), "
         "not (space, evaluations, seed, **options)"),
        (["--data", f"{PACKAGE}.data:Digits"], f"error: data module '{PACKAGE}.data:Digits': module {PACKAGE}.data "
                                               "has no 'Digits'"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            blackbox.main([*args, *extra])
        assert str(exit_info.value.code).startswith(message)
    assert not (tmp_path / "search").exists()
