"""Black-box searches with training: uniform samplers of the cell spaces, random search over a planted accuracy,
every strategy as a recipe on NAS-Bench-201 cells, resume, bad input."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.ops import DARTS_PRIMITIVES, ENAS_MICRO_OPS, PNAS_OPS
from lightning_nas.spaces.enas_micro import MicroArchitecture
from lightning_nas.spaces.pnas import PNASCell
from lightning_nas.strategies.candidates import CandidatePool
from lightning_nas.spaces import SPACES, create_space
from lightning_nas.strategies.blackbox import METHODS
from lightning_nas.strategies.blackbox_search import BlackBoxSearch, sample_architectures


@pytest.mark.parametrize("space, nodes, ops", [("darts", 4, DARTS_PRIMITIVES), ("enas_micro", 5, ENAS_MICRO_OPS),
                                               ("pnas", 3, PNAS_OPS)])
def test_samplers_draw_valid_cells_of_the_space_uniformly(space, nodes, ops) -> None:
    drawn = sample_architectures(create_space(space, nodes=nodes), 300, seed=0)
    assert drawn == sample_architectures(create_space(space, nodes=nodes), 300, seed=0)  # a function of the seed alone
    assert drawn != sample_architectures(create_space(space, nodes=nodes), 300, seed=1)
    edges = [edge for genotype in drawn.values() for edge in genotype.normal]
    counts = Counter(op for op, _ in edges)
    assert set(counts) == set(ops) - {"none"}  # every op but DARTS's zero op, which no derived cell keeps
    expected = len(edges) / len(counts)
    assert all(abs(count - expected) < 0.25 * expected for count in counts.values())  # uniform over ops
    for genotype in drawn.values():
        assert genotype.num_nodes("normal") == nodes
        if space == "darts":  # two distinct inputs per node, as derive_cell keeps
            assert all(a[1] != b[1] for a, b in zip(genotype.normal[::2], genotype.normal[1::2]))
        if space == "enas_micro":
            MicroArchitecture(normal=tuple((i, op) for op, i in genotype.normal),
                              reduce=tuple((i, op) for op, i in genotype.reduce))
        if space == "pnas":
            assert genotype.normal == genotype.reduce and len(PNASCell.from_genotype(genotype, ops)) == nodes
    first_inputs = Counter(genotype.normal[0][1] for genotype in drawn.values())  # node 2 reads input 0 or 1
    assert set(first_inputs) <= {0, 1}


def planted_accuracy(genotype: Genotype) -> float:
    """A known function of the architecture: the share of sep_conv_3x3 edges in the normal cell."""
    return sum(op == "sep_conv_3x3" for op, _ in genotype.normal) / len(genotype.normal)


def test_random_search_returns_the_best_of_its_samples_and_resumes(tmp_path: Path, monkeypatch) -> None:
    trained: list[str] = []

    def train(self, key, genotype, callbacks=(), seed=None):
        trained.append(key)
        return None, {"key": key, "genotype": genotype.to_dict(), "accuracy": planted_accuracy(genotype),
                      "curve": [], "epochs": 1, "seconds": 0.0}

    monkeypatch.setattr(CandidatePool, "train", train)
    data = DigitsDataModule(val_split=100)
    search = BlackBoxSearch(data, str(tmp_path), num_samples=12, seed=3)
    best = search.run()
    assert planted_accuracy(best) == max(planted_accuracy(g) for g in sample_architectures(search.space, 12, 3).values())
    assert Genotype.load(tmp_path / "genotype.json") == best
    assert len(trained) == 12
    assert BlackBoxSearch(data, str(tmp_path), num_samples=12, seed=3).run() == best
    assert len(trained) == 12  # the restarted search found every candidate in the results file


@pytest.mark.parametrize("kwargs, message", [
    ({"space": "nasbench"},
     re.escape(f"unknown search space 'nasbench'; registered spaces: {', '.join(sorted(SPACES))}, ")),
    ({"num_samples": 0}, "num_samples=0 must be at least 1"),
    ({"ops": []}, "ops is empty"),
    ({"epochs": 0}, re.escape("epochs (per candidate) must be at least 1, got 0")),
])
def test_bad_arguments_are_refused_before_any_training(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        BlackBoxSearch(DigitsDataModule(val_split=100), **kwargs)
    with pytest.raises(ConfigError, match="val_split > 0"):
        BlackBoxSearch(DigitsDataModule())


def test_a_space_too_small_for_the_samples_is_refused() -> None:
    with pytest.raises(ConfigError, match="fewer than 50 distinct cells"):
        sample_architectures(create_space("pnas", nodes=1, ops=["identity"]), 50, seed=0)
    assert len(sample_architectures(create_space("pnas", nodes=1, ops=["identity", "max_pool_3x3"]), 3, seed=0)) == 3


@pytest.mark.parametrize("method", [name for name in METHODS if name != "random"])  # random: the test above
def test_training_recipes_search_any_space_and_resume(method, tmp_path: Path, planted: list[str]) -> None:
    """Each strategy as a training recipe on NAS-Bench-201 cells: the planted accuracy (share of nor_conv_3x3 edges)
    decides the best; a restart replays the search from the results file without training anything again."""
    trained = planted
    options = {"evolution": {"population": 4, "tournament": 2}, "predictor": {"initial": 4, "k": 2}}
    kwargs = dict(method=method, space="nb201", num_samples=16, seed=3, options=options.get(method), N=1, F=8,
                  max_params=0.05e6, proxy="params" if METHODS[method].needs_proxy else None)
    search = BlackBoxSearch(DigitsDataModule(val_split=100), str(tmp_path), **kwargs)
    best = search.run()
    assert len(trained) == len(set(trained)) == 16
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["strategy"] == method and len(progress["accuracies"]) == 16
    assert progress["best_accuracy"] == max(progress["accuracies"]) == best.ops.count("nor_conv_3x3") / 6
    assert (tmp_path / "genotype.json").read_text().strip() == best.to_json()
    space = create_space("nb201")  # every proposal within the budget: 10 digit classes, 1 channel, F=8, N=1
    archs = [space.from_json(json.dumps(record["genotype"])) for record in search.pool.finished().values()]
    assert len(archs) == 16 and all(space.num_params(arch, 10, 1, C=8, N=1) <= 0.05e6 for arch in archs)
    assert BlackBoxSearch(DigitsDataModule(val_split=100), str(tmp_path), **kwargs).run() == best
    assert len(trained) == 16  # the restart found every candidate in the results file


def test_another_strategy_or_space_in_a_searched_folder_is_refused_and_overwrites_nothing(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    def train(self, key, arch, callbacks=(), seed=None):
        return None, {"key": key, "genotype": {"arch": arch.to_string()}, "curve": [], "epochs": 1, "seconds": 0.0,
                      "accuracy": arch.ops.count("nor_conv_3x3") / 6}

    monkeypatch.setattr(CandidatePool, "train", train)
    data = DigitsDataModule(val_split=100)
    BlackBoxSearch(data, str(tmp_path), "evolution", space="nb201", num_samples=6, seed=0, N=1, F=8,
                   options={"population": 3, "tournament": 2}).run()
    genotype = (tmp_path / "genotype.json").read_text()
    with pytest.raises(ConfigError, match="another configuration .*strategy 'evolution' -> 'random'"):
        BlackBoxSearch(data, str(tmp_path), space="nb201", num_samples=6, seed=0, N=1, F=8).run()
    with pytest.raises(ConfigError, match="space 'nb201' -> 'darts'"):
        BlackBoxSearch(data, str(tmp_path), "evolution", space="darts", num_samples=6, seed=0, N=1, F=8,
                       options={"population": 3, "tournament": 2}).run()
    assert (tmp_path / "genotype.json").read_text() == genotype


@pytest.mark.parametrize("strategy, options, message", [
    ("evolution", {"population": 0}, "population=0 must be a whole number >= 1"),
    ("evolution", {"tournament": -1}, "tournament=-1 must be a whole number >= 1"),
    ("predictor", {"initial": 0}, "initial=0 must be a whole number >= 1"),
    ("random", {"batch": 0}, "batch=0 must be a whole number >= 1"),
    ("reinforce", {"lr": float("nan")}, "reinforce: lr=nan must be > 0"),
])
def test_bad_strategy_options_end_in_one_line(strategy, options, message) -> None:
    from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
    from lightning_nas.strategies.evaluators import Evaluations, TableEvaluator

    space = create_space("nb201")
    table = BenchmarkTable.read(resolve_table("nb201-cifar10"), space)
    with pytest.raises(ConfigError, match=message):
        METHODS[strategy].search(space, Evaluations(TableEvaluator(table), 10), 0, **options)


def test_a_latency_budget_times_the_proxy_network_on_the_datas_images(tmp_path: Path, planted: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--max_latency_ms: every trained candidate within a planted latency (1 ms per 3x3 convolution edge), timed as
    the proxy network (10 digit classes, 1 channel, F=8, N=1) on 8x8 images, cached beside nothing of the search."""
    from lightning_nas.spaces import latency

    timed: list[tuple] = []

    def measure(space, arch, network, setting, timer=None) -> float:
        timed.append((network[:2], tuple(network[2].items()), setting.input_size, setting.batch_size))
        return float(arch.ops.count("nor_conv_3x3"))

    monkeypatch.setenv(latency.CACHE_ENV, str(tmp_path / "latency"))
    monkeypatch.setattr(latency, "measure_latency", measure)
    search = BlackBoxSearch(DigitsDataModule(val_split=100), str(tmp_path / "run"), space="nb201", num_samples=6, N=1,
                            F=8, max_latency_ms=1, latency_batch_size=4)
    search.run()
    space = create_space("nb201")
    archs = [space.from_json(json.dumps(r["genotype"])) for r in search.pool.finished().values()]
    assert len(archs) == 6 and all(arch.ops.count("nor_conv_3x3") <= 1 for arch in archs)
    assert set(timed) == {((10, 1), (("C", 8), ("N", 1)), (8, 8), 4)}
    with pytest.raises(ConfigError, match="max_latency_ms=0: give a positive number of milliseconds"):
        BlackBoxSearch(DigitsDataModule(val_split=100), str(tmp_path / "other"), space="nb201", max_latency_ms=0)
    assert not (tmp_path / "other").exists()
