"""One-shot verdicts: the intervals against a random cell and against random search at equal cost, on planted
scores with a negative control, and the command's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.benchmark.__main__ import main
from lightning_nas.benchmark.oneshot import ONE_SHOT, percentile, verdict
from lightning_nas.recipes import config_path


TABLE = np.random.default_rng(0).normal(80, 5, size=500)


def test_percentile_counts_cells_below_and_half_the_ties() -> None:
    population = np.array([1.0, 2.0, 2.0, 3.0])
    assert percentile(2.0, population) == 50.0
    assert percentile(0.0, population) == 0.0 and percentile(9.0, population) == 100.0


def test_a_search_that_finds_the_best_cells_beats_a_random_cell_and_cheap_random_search() -> None:
    best = np.sort(TABLE)[-5:]
    result = verdict(list(best), cpu_s=[10.0] * 5, table=TABLE, cell_cpu_s=10.0)
    assert result["random_search_cells"] == [1] * 5
    assert result["vs_random"][0] > 10 and result["vs_random_search"][0] > 5


def test_random_cells_do_not_beat_a_random_cell_nor_random_search_given_much_more_cpu() -> None:
    rng = np.random.default_rng(1)
    drawn = list(rng.choice(TABLE, size=20))
    result = verdict(drawn, cpu_s=[10.0] * 20, table=TABLE, cell_cpu_s=10.0)
    assert result["vs_random"][0] < 0 < result["vs_random"][1]
    costly = verdict(drawn, cpu_s=[500.0] * 20, table=TABLE, cell_cpu_s=10.0)  # the best of 50 random cells
    assert costly["random_search_cells"] == [50] * 20 and costly["vs_random_search"][1] < 0


def test_every_one_shot_strategy_has_a_shipped_config() -> None:
    assert all(config_path(strategy.config).is_file() for strategy in ONE_SHOT.values())


@pytest.mark.parametrize("argv, message", [
    (["--strategies", "darts", "--space", "darts"], "search NAS-Bench-201's supernet"),
    (["--strategies", "darts", "--data", "CIFAR10DataModule"], "the table was trained on FashionMNISTDataModule"),
    (["--strategies", "darts", "--first-seed", "-1"], "--first-seed must be >= 0"),
    (["--strategies", "darts", "--workers", "0"], "must be at least 1"),
    (["--strategies", "nope"], "unknown strategy nope"),
])
def test_bad_one_shot_options_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                             message: str) -> None:
    with pytest.raises(SystemExit):
        main(["--table", "nb201-fmnist", "--runs", "2", "--workdir", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_json_to_a_folder_or_an_unwritable_place_is_refused_before_any_run(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    for target, message in [(tmp_path, "is a folder"), (tmp_path / "missing" / "out.json", "cannot write in")]:
        with pytest.raises(SystemExit):
            main(["--table", "nb201-cifar10", "--runs", "2", "--json", str(target)])
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_verdict_looks_cells_up_and_trains_the_missing_ones_under_the_tables_budget(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    from lightning_nas.benchmark import oneshot
    from lightning_nas.benchmark.build import main as build
    from lightning_nas.spaces import create_space
    from lightning_nas.benchmark.tables import BenchmarkTable

    table = tmp_path / "table.csv"
    build(["--cells", "3", "--output", str(table), "--workers", "1", "--data", "DigitsDataModule", "--C", "2",
           "--steps", "3", "--batch-size", "16", "--heldout", "64"])
    space = create_space("nb201")
    known = BenchmarkTable.read(table, space, complete=False)
    inside = space.to_string(space.decode([int(c) for c in next(iter(known.scores))]))
    outside = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    assert space.key(space.from_string(outside)) not in known.scores

    def planted(name: str, seed: int, folder: Path) -> dict:
        return {"seed": seed, "arch": inside if seed == 0 else outside, "cpu_s": 100.0, "wall_s": 1.0}

    monkeypatch.setattr(oneshot, "run_search", planted)
    out, plot = tmp_path / "out.json", tmp_path / "cells.png"
    main(["--table", str(table), "--strategies", "darts", "--runs", "2", "--workers", "1", "--workdir",
          str(tmp_path / "w"), "--json", str(out), "--plot", str(plot)])
    result = json.loads(out.read_text())
    assert plot.read_bytes()[:4] == b"\x89PNG" and result["oneshot"]["table"] == str(table)
    runs = result["strategies"]["darts"]["runs"]
    assert runs[0]["score"] == known.lookup(space.from_string(inside))
    added = BenchmarkTable.read(tmp_path / "w" / "added_cells.csv", space, complete=False)
    assert runs[1]["score"] == added.lookup(space.from_string(outside)) and len(added.scores) == 1
    assert runs[1]["cifar10"] == pytest.approx(94.37, abs=0.005) and 0 <= runs[1]["percentile"] <= 100
    row = result["strategies"]["darts"]
    assert set(row) >= {"runs", "mean", "sd", "percentile_median", "vs_random", "vs_random_search"}
    k = max(1, round(100 / (sum(known.cpu_s) / len(known.cpu_s))))  # the search's 100 CPU-s in this table's cells
    assert row["random_search_cells"] == [k, k]
