"""Running the strategies against a benchmark table and summarising the runs (means, spreads, optimum hits and
bootstrap intervals of the difference to random search)."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from lightning_nas.benchmark.tables import BenchmarkTable
from lightning_nas.errors import check
from lightning_nas.spaces import SearchSpace, create_space
from lightning_nas.strategies.blackbox import search_method
from lightning_nas.strategies.evaluators import Evaluations, TableEvaluator

CHECKPOINTS = (10, 50, 100)
"""Query budgets reported besides the full one."""
BOOTSTRAP_SAMPLES = 2000


def incumbent_curve(table: BenchmarkTable, evaluations: Evaluations, best_key: str) -> tuple[list[float], list[bool]]:
    """After each query: the true table value of the architecture scored best so far (scores may be noisy), and
    whether it is ``best_key``, the best architecture a search may propose."""
    curve, hits, incumbent = [], [], None
    for arch, score in evaluations.history:
        if incumbent is None or score > incumbent[1]:
            incumbent = (arch, score)
        key = table.space.key(incumbent[0])
        curve.append(table.scores[key])
        hits.append(key == best_key)
    return curve, hits


def best_within(table: BenchmarkTable, space: SearchSpace) -> str:
    """The key of the table's best architecture among those ``space`` may propose (its budget)."""
    if not space.budget():
        return max(table.scores, key=table.scores.__getitem__)
    fitting = [space.key(arch) for arch in table.architectures() if space.fits(arch)]
    check(bool(fitting), f"no {space.name} architecture has {space.budget_text()}; raise "
                         f"{' or '.join('--' + name.replace('_', '-') for name in space.budget())}")
    return max(fitting, key=table.scores.__getitem__)


def bootstrap_difference(a: Sequence[float], b: Sequence[float], seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of mean(a) - mean(b), runs resampled independently on each side."""
    rng = np.random.default_rng(seed)
    a_, b_ = np.asarray(a), np.asarray(b)
    means_a = a_[rng.integers(len(a_), size=(BOOTSTRAP_SAMPLES, len(a_)))].mean(1)
    means_b = b_[rng.integers(len(b_), size=(BOOTSTRAP_SAMPLES, len(b_)))].mean(1)
    low, high = np.percentile(means_a - means_b, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def run_benchmark(space_name: str, table_path: str, strategies: Sequence[str], queries: int = 150, runs: int = 100,
                  first_seed: int = 0, noise: float = 0.0, max_params: float | None = None,
                  metric: str | None = None, max_latency_ms: float | None = None) -> dict[str, Any]:
    """Run every strategy ``runs`` times on the table; random search always runs, as the reference. A budget counts
    parameters and times latency (``spaces.latency``: batch 1, one CPU thread, cached) of the space's default
    network (C=16, N=5, 32x32 input); ``found`` holds each run's final incumbent (key)."""
    space = create_space(space_name)
    size = math.prod(space.choices())
    check(queries <= size, f"--queries {queries} is more than the {space_name} space's {size} architectures; "
                           f"ask for at most {size}")
    table = BenchmarkTable.read(table_path, space, metric)
    searched = space.with_budget(max_params, max_latency_ms)
    best_key = best_within(table, searched)
    names = list(dict.fromkeys(["random", *strategies]))
    methods = {name: search_method(name) for name in names}
    curves: dict[str, list[list[float]]] = {name: [] for name in names}
    hits: dict[str, list[list[bool]]] = {name: [] for name in names}
    found: dict[str, list[str]] = {name: [] for name in names}
    with tqdm(total=len(names) * runs * queries, desc="benchmark", unit="query", leave=False) as progress:
        for name in names:
            for seed in range(first_seed, first_seed + runs):
                progress.set_postfix_str(f"{name} seed {seed}")
                evaluations = Evaluations(TableEvaluator(table, noise, seed), queries, on_queries=progress.update)
                methods[name].search(searched, evaluations, seed)
                curve, hit = incumbent_curve(table, evaluations, best_key)
                pad = queries - len(curve)  # a run that ran out of new architectures keeps its incumbent
                curves[name].append(curve + curve[-1:] * pad)
                hits[name].append(hit + hit[-1:] * pad)
                found[name].append(table.space.key(max(evaluations.history, key=lambda item: item[1])[0]))
                progress.update(pad)
    budgets = [q for q in CHECKPOINTS if q < queries] + [queries]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name in strategies:
        summary[name] = {}
        for q in budgets:
            values = [curve[q - 1] for curve in curves[name]]
            summary[name][str(q)] = {
                "mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4),
                "optimum_hits": sum(hit[q - 1] for hit in hits[name]),
                "vs_random": bootstrap_difference(values, [curve[q - 1] for curve in curves["random"]], seed=q),
            }
    title = (f"{space_name}, {table.metric}, {runs} runs (seeds {first_seed}-{first_seed + runs - 1}), noise sd {noise:g}"
             + "".join(f", {limit}" for limit in searched.budget().values()))
    return {"space": space_name, "table": str(table_path), "metric": table.metric, "table_best": table.best,
            "best_proposable": table.scores[best_key], "queries": queries, "runs": runs, "first_seed": first_seed,
            "noise": noise, "max_params": max_params, "max_latency_ms": max_latency_ms, "title": title,
            "strategies": summary, "found": {name: found[name] for name in strategies},
            "curves": {name: {"mean": np.mean(curves[name], 0).round(4).tolist(),
                              "sd": np.std(curves[name], 0, ddof=1).round(4).tolist()} for name in strategies}}


def format_table(result: dict[str, Any]) -> str:
    """The summary as text: one row per strategy and budget."""
    lines = [result["title"], f"table best {result['table_best']:.2f} (best proposable {result['best_proposable']:.2f}, "
                              f"the 'optimum'); incumbents read at their true {result['metric']}",
             f"{'strategy':<10} {'queries':>7} {'mean':>9} {'sd':>7} {'optimum':>8}  vs random (95 % CI)"]
    for name, rows in result["strategies"].items():
        for q, row in rows.items():
            low, high = row["vs_random"]
            lines.append(f"{name:<10} {q:>7} {row['mean']:>9.3f} {row['sd']:>7.3f} {row['optimum_hits']:>8}  "
                         f"{(low + high) / 2:+.3f} [{low:+.3f}, {high:+.3f}]")
    return "\n".join(lines)
