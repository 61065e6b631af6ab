"""One search's queries (Evaluations): budget, repeats, and the progress they report."""

from __future__ import annotations

from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.spaces import create_space
from lightning_nas.strategies.blackbox_search import sample_architectures
from lightning_nas.strategies.evaluators import Evaluations, TableEvaluator


def test_each_new_query_is_reported_once_and_none_beyond_the_budget() -> None:
    space = create_space("nb201")
    table = BenchmarkTable.read(resolve_table("nb201-cifar10"), space)
    archs = list(sample_architectures(space, 30, 0).values())
    reported: list[int] = []
    evaluations = Evaluations(TableEvaluator(table, 0.0, 0), 25, on_queries=reported.append)
    evaluations(archs[:10])
    evaluations(archs[:10])  # seen before: no query spent, nothing reported
    evaluations(archs)  # 20 new, of which the budget allows 15
    assert reported == [10, 15] and len(evaluations.history) == 25 and evaluations.done
