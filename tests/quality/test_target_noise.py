"""Target noise in the report: planted reproducible accuracy against pure noise, a whole tiny run alone and its
resume, and bad options refused before any work."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

import pytest

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.quality.__main__ import main
from lightning_nas.strategies.candidates import code_key
from lightning_nas.quality.target_noise import TargetNoise, TargetNoiseMeasurement, format_noise_table
from lightning_nas.strategies.candidates import CandidatePool
from lightning_nas.strategies.pnas import PNASSearch

OPS = ["sep_conv_3x3", "identity", "avg_pool_3x3", "max_pool_3x3"]


def measure(tmp_path: Path, monkeypatch, accuracy: Callable[[Genotype, int], float], cells: int,
            runs: int, retrained: Callable[[Genotype], float] | None = None) -> tuple[TargetNoiseMeasurement, dict]:
    """Target noise of a B=3 search whose candidates "train" instantly to ``accuracy(genotype, seed)`` (and, given
    ``retrained``, "retrain" to ``retrained(genotype)``)."""
    seen = []

    def train(self, key, genotype, callbacks=(), seed=None):
        seen.append(seed)
        return None, {"key": key, "genotype": genotype.to_dict(), "accuracy": accuracy(genotype, seed), "seconds": 0.0}

    monkeypatch.setattr(CandidatePool, "train", train)
    search = PNASSearch(DigitsDataModule(val_split=100), str(tmp_path), B=3, K=8, ops=OPS, accelerator="cpu")
    retrain = None if retrained is None else lambda architectures: {
        key: retrained(genotype) for key, genotype in architectures.items()}
    measurement = TargetNoiseMeasurement(search, TargetNoise(cells=cells, runs=runs, retrain=retrain is not None),
                                         random_seed=0, retrained=retrain)
    result = measurement.run()
    assert sorted(seen) == sorted(list(range(runs)) * cells)  # each cell once per training seed 0..runs-1
    return measurement, result


def in_cell(genotype: Genotype) -> float:
    return random.Random(json.dumps(genotype.to_dict())).random()


def test_accuracy_set_by_the_cell_alone_agrees_perfectly_between_runs(tmp_path: Path, monkeypatch) -> None:
    measurement, result = measure(tmp_path, monkeypatch, lambda genotype, seed: in_cell(genotype), cells=16, runs=3)
    assert [len(cell) for cell in measurement.cells] == [1] * 6 + [2] * 5 + [3] * 5  # spread over 1..B blocks
    assert len(set(measurement.cells)) == 16
    assert result["spearman"] == pytest.approx(1.0) and result["run_spread"] == 0.0 and result["cell_spread"] > 0.1
    assert [(level["b"], level["cells"]) for level in result["by_blocks"]] == [(1, 6), (2, 5), (3, 5)]
    assert all(level["spearman"] == pytest.approx(1.0) for level in result["by_blocks"])
    assert [a["runs"] for a in result["accuracy"]] == [[in_cell(c.to_genotype())] * 3 for c in measurement.cells]


def test_negative_control_accuracy_of_pure_noise_gives_spearman_near_zero(tmp_path: Path, monkeypatch) -> None:
    _, result = measure(tmp_path, monkeypatch, lambda genotype, seed: random.Random(
        f"{json.dumps(genotype.to_dict())}/{seed}").random(), cells=36, runs=3)
    assert abs(result["spearman"]) < 0.25, result["spearman"]  # measured 0.12
    assert result["run_spread"] > 0.2  # uniform noise: std ≈ 0.29 between runs (measured 0.25)


def test_a_proxy_that_ranks_as_retraining_correlates_with_it_and_one_that_ranks_backwards_does_not(
        tmp_path: Path, monkeypatch) -> None:
    _, agrees = measure(tmp_path / "a", monkeypatch, lambda genotype, seed: in_cell(genotype), cells=16, runs=2,
                        retrained=lambda genotype: 0.5 + in_cell(genotype) / 2)
    assert agrees["retrain"]["spearman"] == pytest.approx(1.0)
    assert all(level["spearman"] == pytest.approx(1.0) for level in agrees["retrain"]["by_blocks"])
    assert agrees["retrain"]["accuracy"] == [0.5 + a["runs"][0] / 2 for a in agrees["accuracy"]]
    # negative control: a proxy that agrees with itself perfectly but favours what retraining ranks last
    _, backwards = measure(tmp_path / "b", monkeypatch, lambda genotype, seed: in_cell(genotype), cells=16, runs=2,
                           retrained=lambda genotype: 1 - in_cell(genotype))
    assert backwards["spearman"] == pytest.approx(1.0) and backwards["retrain"]["spearman"] == pytest.approx(-1.0)
    assert "proxy vs retraining     -1.000" in format_noise_table(backwards)


def test_alone_it_trains_each_cell_once_per_seed_under_the_search_budget_and_resumes(tmp_path: Path, capsys,
                                                                                      pnas_report) -> None:
    config = pnas_report(tmp_path, target_noise={"cells": 4, "runs": 2, "only": True})
    report = main(["--config", str(config)])
    out = tmp_path / "report"
    assert not (out / "found").exists() and not (out / "retrain.jsonl").exists()  # alone: no search, no retraining
    noise = report["target_noise"]
    assert noise["proxy"] == {"N": 1, "F": 4, "epochs": 1, "lr": 0.025, "limit_train_batches": 2,
                              "lr_interval": "epoch", "seed": 0}
    assert (noise["cells"], noise["runs"]) == (4, 2) and [a["b"] for a in noise["accuracy"]] == [1, 1, 2, 2]
    results = (out / "target_noise" / "results.jsonl").read_text().splitlines()
    records = {r["key"]: r for r in map(json.loads, results)}
    assert sorted(records) == sorted(f"{a['key']}/seed{s}" for a in noise["accuracy"] for s in (0, 1))
    assert [a["runs"] for a in noise["accuracy"]] == [
        [records[f"{a['key']}/seed{s}"]["accuracy"] for s in (0, 1)] for a in noise["accuracy"]]
    assert {r["epochs"] for r in records.values()} == {1} and -1 <= noise["spearman"] <= 1
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert format_noise_table(noise) in capsys.readouterr().out

    # a second run (a killed one resumed) retrains nothing and measures the same
    stamp = (out / "target_noise" / "results.jsonl").stat().st_mtime_ns
    assert main(["--config", str(config)])["target_noise"] == noise
    assert (out / "target_noise" / "results.jsonl").stat().st_mtime_ns == stamp


def test_with_retrain_alone_it_retrains_only_its_cells_under_the_report_budget(tmp_path: Path, pnas_report) -> None:
    report = main(["--config", str(pnas_report(tmp_path, target_noise={"cells": 4, "runs": 2, "only": True,
                                                                        "retrain": True}))])
    out = tmp_path / "report"
    assert not (out / "found").exists()
    noise = report["target_noise"]
    records = [json.loads(line) for line in (out / "retrain.jsonl").read_text().splitlines()]
    code = code_key()  # the report's retraining is keyed by the code version too
    assert sorted(r["key"] for r in records) == sorted(f"{a['key']}/seed0/{code}" for a in noise["accuracy"])
    by_key = {r["key"]: r["accuracy"] for r in records}
    assert noise["retrain"]["accuracy"] == [by_key[f"{a['key']}/seed0/{code}"] for a in noise["accuracy"]]
    assert -1 <= noise["retrain"]["spearman"] <= 1


def test_retrain_without_a_report_is_refused(tmp_path: Path) -> None:
    search = PNASSearch(DigitsDataModule(val_split=100), str(tmp_path), B=2, K=8, ops=OPS, accelerator="cpu")
    with pytest.raises(ConfigError, match="target_noise.retrain needs the report's retraining budget"):
        TargetNoiseMeasurement(search, TargetNoise(retrain=True), random_seed=0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cells": 1}, "target_noise.cells=1: a Spearman correlation needs at least 2 cells; set cells to 2 or more"),
        ({"runs": 1}, "target_noise.runs=1: runs are compared with each other, so give at least 2; set runs to 2 or "
                      "more"),
        ({"cells": 30}, "target_noise asks for 15 distinct random 1-block cells, but the space of ops ['identity', "
                        "'max_pool_3x3'] gave only 10: lower cells"),
    ],
)
def test_bad_options_end_in_one_line_before_any_work(tmp_path: Path, options, message, pnas_report) -> None:
    config = pnas_report(tmp_path, target_noise={"only": True, **options})
    with pytest.raises(SystemExit) as exit:
        main(["--config", str(config)])
    assert str(exit.value.code).startswith(f"error: {message}") and "\n" not in str(exit.value.code)
    assert not (tmp_path / "report").exists()


def test_only_pnas_has_a_target_to_measure(tmp_path: Path, pnas_report) -> None:
    config = pnas_report(tmp_path, target_noise={"only": True})
    with pytest.raises(SystemExit) as exit:
        main(["--config", str(config), "--strategy", "random", "--space.name", "darts"])
    assert "target_noise measures the PNAS search, but the strategy is 'random'" in str(exit.value.code)
