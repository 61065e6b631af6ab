"""The latency budget in every black-box strategy, the benchmark, the table builder and the latency report, with a
planted latency (1 ms plus 1 ms per 3x3 convolution edge) in place of timing: nothing here depends on this machine's
speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lightning_nas.benchmark import build as build_module
from lightning_nas.benchmark import latency as report_module
from lightning_nas.benchmark.__main__ import main
from lightning_nas.benchmark.runs import run_benchmark
from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.errors import ConfigError
from lightning_nas.spaces import create_space, latency
from lightning_nas.strategies.blackbox import METHODS, search_method
from lightning_nas.strategies.evaluators import Evaluations, TableEvaluator

NB201_TABLE = resolve_table("nb201-cifar10")
TINY = ["--data", "DigitsDataModule", "--C", "2", "--steps", "3", "--batch-size", "16", "--heldout", "64"]


def planted_ms(arch: Any) -> float:
    return 1.0 + arch.to_string().count("nor_conv_3x3")


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every latency table times by ``planted_ms`` and caches under ``tmp_path``; the list collects what it timed."""
    timed: list[Any] = []

    def measure(space: Any, arch: Any, network: Any, setting: Any, timer: Any = None) -> float:
        timed.append(arch)
        return planted_ms(arch)

    monkeypatch.setenv(latency.CACHE_ENV, str(tmp_path / "latency"))
    monkeypatch.setattr(latency, "measure_latency", measure)
    monkeypatch.setattr(report_module, "measure_latency", measure)
    return timed


@pytest.mark.parametrize("name", list(METHODS))
def test_every_black_box_strategy_proposes_only_cells_within_the_latency_budget(name: str) -> None:
    space = create_space("nb201")
    table = BenchmarkTable.read(NB201_TABLE, space)
    budgeted = space.with_budget(max_latency_ms=2, latency=planted_ms)
    proxy = (lambda archs: [-planted_ms(arch) for arch in archs]) if METHODS[name].needs_proxy else None
    evaluations = Evaluations(TableEvaluator(table), 40, proxy=proxy)
    search_method(name).search(budgeted, evaluations, 0)
    assert len(evaluations.history) >= 10
    assert all(planted_ms(arch) <= 2 for arch, _ in evaluations.history)


def test_the_benchmark_honours_the_latency_budget(planted: list[Any]) -> None:
    space = create_space("nb201")
    table = BenchmarkTable.read(NB201_TABLE, space)
    result = run_benchmark("nb201", str(NB201_TABLE), ["evolution"], queries=20, runs=2, max_latency_ms=1)
    # 1 ms: no 3x3 convolution; the 'optimum' is the best such cell, found from the table independently
    texts = {space.key(arch): space.to_string(arch) for arch in table.architectures()}
    best = max(score for key, score in table.scores.items() if "nor_conv_3x3" not in texts[key])
    assert result["best_proposable"] == best < table.best
    assert all("nor_conv_3x3" not in texts[key] for key in result["found"]["evolution"])
    assert result["max_latency_ms"] == 1 and "at most 1 ms latency" in result["title"]
    timed = len(planted)  # the budget's optimum: the table's rows timed best first until one fits
    assert timed == len({space.key(arch) for arch in planted}) < len(table.scores)  # each cell timed at most once
    run_benchmark("nb201", str(NB201_TABLE), ["random"], queries=5, runs=2, max_latency_ms=1)
    assert len(planted) == timed  # a second benchmark on this machine times nothing


def test_an_unreachable_latency_budget_of_the_benchmark_is_one_line(planted: list[Any]) -> None:
    with pytest.raises(ConfigError, match="no nb201 architecture has at most 0.5 ms latency; raise --max-latency-ms"):
        run_benchmark("nb201", str(NB201_TABLE), ["random"], queries=5, runs=2, max_latency_ms=0.5)


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
@pytest.mark.parametrize("command", ["benchmark", "build"])
def test_a_latency_budget_that_is_no_positive_number_is_refused_in_one_line(
        command: str, value: str, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = (["--table", "nb201-cifar10"] if command == "benchmark" else
            ["build", "--cells", "2", "--output", str(tmp_path / "t.csv"), *TINY])
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--max-latency-ms", value])
    assert exit_.value.code == 2
    prog = "python -m lightning_nas.benchmark" + (" build" if command == "build" else "")
    assert capsys.readouterr().err == (f"{prog}: error: --max-latency-ms must be a positive number, got "
                                       f"{float(value)} (see --help)\n")
    assert not list(tmp_path.iterdir())


def test_the_builder_draws_only_cells_within_the_latency_budget(planted: list[Any], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[tuple[str, int]]] = []
    monkeypatch.setattr(build_module.TableBuild, "run", lambda self, jobs, workers: drawn.append(jobs) or {})
    build_module.main(["--cells", "6", "--output", str(tmp_path / "t.csv"), *TINY, "--max-latency-ms", "1"])
    build_module.main(["--cells", "6", "--output", str(tmp_path / "t.csv"), *TINY])
    budgeted, free = ([text for text, _ in jobs] for jobs in drawn)
    assert len(budgeted) == 6 and not any("nor_conv_3x3" in text for text in budgeted)
    assert any("nor_conv_3x3" in text for text in free)  # the negative control
    assert planted and all(arch.to_string() in {a.to_string() for a in planted} for arch in
                           (create_space("nb201").from_string(text) for text in budgeted))


@pytest.mark.slow
def test_the_report_ranks_and_compares_the_budgets(planted: list[Any], tmp_path: Path) -> None:
    result = report_module.main(["--cells", "12", "--batch", "2", "--runs", "2", "--queries", "10",
                                 "--spread-cells", "1", "--spread-times", "2", "--json", str(tmp_path / "l.json"),
                                 "--plot", str(tmp_path / "l.png")])
    # the planted latency counts 3x3 convolutions, which hold most of a cell's parameters and FLOPs
    assert result["spearman"]["ms_b1~ms_b2"] == 1.0 and result["spearman"]["flops~ms_b1"] > 0.8
    budgets = result["budgets"]
    assert result["caps"]["ms"] == 1.0 and budgets["latency"]["cells_within"] == 4 ** 6
    for found in budgets["latency"]["found"].values():
        assert found["within_latency"] == 2 and found["op_mix"].get("nor_conv_3x3", 0) == 0
    assert any(f["op_mix"].get("nor_conv_3x3", 0) > 0 for f in budgets["none"]["found"].values())
    assert (tmp_path / "l.json").is_file() and (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
    assert "Spearman over 12 uniformly drawn cells" in report_module.format_report(result)


def test_the_report_without_budgets_ranks_the_sample_and_what_each_cost_admits(planted: list[Any],
                                                                                tmp_path: Path) -> None:
    result = report_module.main(["--cells", "12", "--batch", "2", "--spread-cells", "2", "--spread-times", "3",
                                 "--no-budgets", "--plot", str(tmp_path / "l.png")])
    assert "budgets" not in result and len(result["spread"]) == 2 and len(result["cells"]) == 12
    assert result["spread"][0]["thread_cpu"]["figures"] == [planted_ms(create_space("nb201").from_string(
        result["spread"][0]["arch"]))] * 3
    share = report_module.op_mix([cell["arch"] for cell in result["cells"]])["nor_conv_3x3"]
    admitted = result["admitted"]
    # the planted latency counts 3x3 convolutions: its budget admits fewer of them than the sample holds
    assert admitted["ms_b1"]["op_mix"].get("nor_conv_3x3", 0) < share
    assert admitted["ms_b1"]["also_within_latency"] == admitted["ms_b1"]["cells"] >= 3
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
    # a planted timer agrees with itself: the retest's ceiling is 1
    again = result["retest"]["ms_b1"]
    assert again["spearman"] == 1.0 and again["fresh"] == [cell["ms_b1"] for cell in result["cells"]]
    assert "ms_b1 timed again 12 cells: +1.000" in report_module.format_report(result)
