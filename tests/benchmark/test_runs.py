"""The benchmark against NAS-Bench-201's table, and every strategy on planted tables with a negative control."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_nas.benchmark.__main__ import main
from lightning_nas.benchmark.oneshot import ONE_SHOT
from lightning_nas.benchmark.runs import run_benchmark
from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.errors import ConfigError
from lightning_nas.spaces import SPACES, create_space
from lightning_nas.spaces.nb201 import NB201Architecture
from lightning_nas.strategies.blackbox import METHODS

NB201_TABLE = resolve_table("nb201-cifar10")
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
PLANTED = ("nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1")
"""The optimum of the planted table: on every edge one op adds the most (an additive landscape)."""
SEARCHING = [name for name, method in METHODS.items() if not method.needs_proxy]
"""The black-box strategies that need no zero-cost proxy (training-free search has its own tests below)."""
LEARNING = [name for name in SEARCHING if name != "random"]
"""The black-box strategies that learn from their queries: every one of those but random search."""


def write_table(path: Path, scores: dict[str, float], metric: str = "score") -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["arch", metric])
        writer.writerows(scores.items())
    return path


def planted_scores(seed: int = 0) -> dict[str, float]:
    """Each edge's op adds a fixed amount, the planted op 1 more than any other; plus small per-cell noise. The
    optimum is the all-planted cell, 1 of 15,625, which random search hits with 150 queries in about 1 run of 100."""
    rng = random.Random(seed)
    space = create_space("nb201")
    gains = [{op: rng.uniform(0, 1) + (1.0 if op == planted else 0.0) for op in space.ops} for planted in PLANTED]
    scores = {}
    for index in range(5**6):
        decisions = [(index // 5**e) % 5 for e in range(6)]
        arch = space.decode(decisions)
        scores[arch.to_string()] = sum(g[op] for g, op in zip(gains, arch.ops)) + rng.gauss(0, 0.05)
    return scores


def write_proxies(path: Path, columns: dict[str, float | None], seed: int = 0) -> Path:
    """A proxy table of every cell: each column the planted score times its factor (None: an empty column)."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["arch", *columns])
        for arch, score in planted_scores(seed).items():
            writer.writerow([arch, *("" if factor is None else factor * score for factor in columns.values())])
    return path


def test_reads_nas_bench_201_figures() -> None:
    table = BenchmarkTable.read(NB201_TABLE, create_space("nb201"))
    assert len(table.scores) == 15_625
    assert round(table.best, 2) == 94.37
    assert round(table.lookup(NB201Architecture.from_string(ALL_SKIP)), 2) == 54.30
    assert round(statistics.median(table.scores.values()), 2) == 90.75


def test_table_errors_are_one_line(tmp_path: Path) -> None:
    scores = planted_scores()
    space = create_space("nb201")
    with pytest.raises(ConfigError, match="has no architecture column 'arch'; its columns are genotype, score"):
        path = tmp_path / "a.csv"
        path.write_text("genotype,score\n|x|,1\n")
        BenchmarkTable.read(path, space)
    with pytest.raises(ConfigError, match="line 2: .* is not an architecture of the nb201 space"):
        BenchmarkTable.read(write_table(tmp_path / "b.csv", {"not a cell": 1.0}), space)
    partial = dict(list(scores.items())[:-1])
    with pytest.raises(ConfigError, match="lacks .*: it holds 15624 of the nb201 space's 15625 architectures"):
        BenchmarkTable.read(write_table(tmp_path / "c.csv", partial), space)
    with pytest.raises(ConfigError, match="has no column 'top1'; its metric columns are score"):
        BenchmarkTable.read(write_table(tmp_path / "d.csv", scores), space, metric="top1")


def test_planted_structure_is_found(tmp_path: Path) -> None:
    """Every learning strategy reaches the planted optimum in most runs of 150 queries; random search almost never."""
    table = write_table(tmp_path / "planted.csv", planted_scores())
    result = run_benchmark("nb201", str(table), SEARCHING, queries=150, runs=20)
    hits = {name: rows["150"]["optimum_hits"] for name, rows in result["strategies"].items()}
    assert hits["random"] <= 2
    for name in LEARNING:
        assert hits[name] >= 10, hits
        assert result["strategies"][name]["150"]["vs_random"][0] > 0


def test_shuffled_table_is_a_negative_control(tmp_path: Path) -> None:
    """The same scores shuffled over the cells: no structure left, so no strategy hits the optimum more often than
    chance, and none beats random search by its interval."""
    scores = planted_scores()
    values = list(scores.values())
    random.Random(1).shuffle(values)
    table = write_table(tmp_path / "shuffled.csv", dict(zip(scores, values)))
    result = run_benchmark("nb201", str(table), SEARCHING, queries=150, runs=20)
    for name, rows in result["strategies"].items():
        assert rows["150"]["optimum_hits"] <= 2, name
        assert rows["150"]["vs_random"][0] < 0.05, name


def test_command_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_table(tmp_path / "planted.csv", planted_scores())
    out, plot = tmp_path / "result.json", tmp_path / "curves.png"
    main(["--table", str(table), "--strategies", "random,evolution", "--queries", "60", "--runs", "4",
          "--noise", "0.5", "--max-params", "0.8e6", "--first-seed", "1000", "--json", str(out), "--plot", str(plot)])
    result = json.loads(out.read_text())
    assert set(result["strategies"]) == {"random", "evolution"}
    assert set(result["strategies"]["evolution"]) == {"10", "50", "60"}
    row = result["strategies"]["evolution"]["60"]
    assert set(row) == {"mean", "sd", "optimum_hits", "vs_random"} and row["vs_random"][0] <= row["vs_random"][1]
    assert result["first_seed"] == 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert "evolution       60" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--queries", "0"], "--queries, --runs and --workers must be at least 1, got 0, 100 and"),
    (["--runs", "0"], "--queries, --runs and --workers must be at least 1, got 150, 0 and"),
    (["--runs", "1"], "--runs must be at least 2"),
    (["--strategies", "random,annealing"], f"unknown strategy annealing; known: {', '.join([*METHODS, *ONE_SHOT])}, "
                                           "or a search function of your own"),
    (["--strategies", "foo"], "unknown strategy foo; known:"),
    (["--queries", "x"], "argument --queries: invalid int value: 'x'"),
    (["--space", "nb202"], f"argument --space: unknown search space 'nb202'; registered spaces: "
                           f"{', '.join(sorted(SPACES))}, or a space of your own"),
    (["--space", "nosuch.spaces:Chain"], "argument --space: search space 'nosuch.spaces:Chain': no module named "
                                         "'nosuch' (expected package.module:Name"),
    (["--strategies", "random,lightning_nas.strategies.blackbox:nothing"], "--strategies: search method "
     "'lightning_nas.strategies.blackbox:nothing': module lightning_nas.strategies.blackbox has no 'nothing'"),
])
def test_a_bad_option_is_one_line_before_any_run(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--table", "nb201-cifar10", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m lightning_nas.benchmark: error: {message}") and err.endswith(" (see --help)\n")
    assert err.count("\n") == 1  # no usage block


def test_command_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--table", str(tmp_path / "missing.csv")])
    assert exit_.value.code == 2
    assert "missing.csv: no such file and no shipped table of that name" in capsys.readouterr().err


def test_a_parameter_budget_below_every_network_ends_in_one_line() -> None:
    with pytest.raises(ConfigError, match="no nb201 architecture has at most 10 parameters; raise --max-params"):
        run_benchmark("nb201", str(NB201_TABLE), ["random"], queries=5, runs=2, max_params=10)


def test_a_black_box_run_loads_no_lightning(tmp_path: Path) -> None:
    """Look-ups need no Lightning: ``python -m lightning_nas.benchmark`` with every black-box strategy, JSON and plot
    included, and the imports of its one-shot, build and describe modules, load none of it (one-shot runs load it in
    their own processes)."""
    argv = ["lightning_nas.benchmark", "--table", "nb201-cifar10", "--strategies", ",".join(METHODS),
            "--proxy", "params", "--proxy-table", str(write_proxies(tmp_path / "p.csv", {"params": 0})),
            "--queries", "10", "--runs", "2", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    code = ("import runpy, sys\n"
            "import lightning_nas.benchmark.build, lightning_nas.benchmark.describe, lightning_nas.benchmark.oneshot\n"
            f"sys.argv = {argv!r}\n"
            "runpy.run_module('lightning_nas.benchmark', run_name='__main__', alter_sys=True)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'lightning_fabric', "
            "'pytorch_lightning', 'torchmetrics')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "random          10" in done.stdout and (tmp_path / "r.png").is_file()
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_proxy_equal_to_the_score_finds_the_optimum_at_once_and_a_warm_start_is_compared_with_its_plain_run(
        tmp_path: Path) -> None:
    """Training-free search by a proxy equal to the planted score (drawing 2,000 cells) holds the best of its draws
    after one query; by the reversed proxy it never reaches random search. A vote of the two ranks every cell alike,
    so it is random search's equal. Warm starts come with their interval against the plain strategy, and every row
    with the queries it needed to reach evolution's mean at the full budget."""
    table = write_table(tmp_path / "planted.csv", planted_scores())
    proxies = write_proxies(tmp_path / "proxies.csv", {"exact": 1.0, "reversed": -1.0, "empty": None})
    result = run_benchmark("nb201", str(table), ["evolution", "predictor", "zero_cost"], queries=50, runs=10,
                           proxies=["exact"], proxy_table=str(proxies), warm_start=200)
    rows = result["strategies"]
    assert set(rows) == {"evolution", "predictor", "zero_cost", "evolution+warm", "predictor+warm"}
    assert rows["zero_cost"]["10"]["vs_random"][0] > 0 and "vs_plain" not in rows["zero_cost"]["10"]
    assert rows["evolution+warm"]["10"]["vs_plain"][0] > 0  # its first 20 are the best of 200 by the exact proxy
    reach = result["reach"]
    assert reach["target"] == rows["evolution"]["50"]["mean"] and reach["queries"]["evolution"] <= 50
    assert reach["queries"]["zero_cost"] is None or reach["queries"]["zero_cost"] >= 1
    reversed_ = run_benchmark("nb201", str(table), ["zero_cost"], queries=50, runs=10, proxies=["reversed"],
                              proxy_table=str(proxies))
    assert reversed_["strategies"]["zero_cost"]["50"]["vs_random"][1] < 0
    vote = run_benchmark("nb201", str(table), ["zero_cost"], queries=50, runs=10, proxies=["exact", "reversed"],
                         proxy_table=str(proxies))
    low, high = vote["strategies"]["zero_cost"]["50"]["vs_random"]
    assert low < 0.3 and high > -0.3 and "proxy exact+reversed" in vote["title"]


@pytest.mark.parametrize("argv, message", [
    (["--strategies", "zero_cost"], "zero_cost ranks architectures by a zero-cost proxy: pass --proxy"),
    (["--strategies", "evolution", "--warm-start", "100"], "--warm-start ranks architectures by a zero-cost proxy"),
    (["--strategies", "zero_cost", "--proxy", "empty"], "proxy table .*: empty is empty or absent for 15625 of the "
                                                        "15625 architectures a search may propose"),
    (["--strategies", "zero_cost", "--proxy", "synflow"], "proxy table .* has no column synflow; its proxies are "
                                                          "exact, reversed, empty"),
    (["--strategies", "local", "--proxy", "exact", "--warm-start", "100"], "--warm-start 100: none of random, local "
                                                                           "takes a warm start"),
])
def test_a_missing_or_empty_proxy_is_one_line_before_any_run(tmp_path: Path, argv: list[str], message: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    proxies = write_proxies(tmp_path / "proxies.csv", {"exact": 1.0, "reversed": -1.0, "empty": None})
    with pytest.raises(SystemExit) as exit_:
        main(["--table", str(write_table(tmp_path / "planted.csv", planted_scores())), "--proxy-table", str(proxies),
              "--runs", "2", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
