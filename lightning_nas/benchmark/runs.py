"""Running the strategies against a benchmark table and summarising the runs (means, spreads, optimum hits and
bootstrap intervals of the difference to random search)."""

from __future__ import annotations

import inspect
import math
import statistics
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from lightning_nas.benchmark.tables import PROXY_TABLE, BenchmarkTable, ProxyTable
from lightning_nas.errors import ConfigError, check
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
    """The key of the table's best architecture among those ``space`` may propose (its budget): the best of the
    table's rows that fit, found without listing the space (the rows of a complete table are the space); ties go to
    the first in the order of the decisions."""
    if not space.budget():
        return max(table.scores, key=table.scores.__getitem__)
    ranked = sorted(table.archs.items(), key=lambda item: (-table.scores[item[0]], space.decisions(item[1])))
    for key, arch in ranked:
        if space.fits(arch):
            return key
    raise ConfigError(f"no {space.name} architecture has {space.budget_text()}; raise "
                      f"{' or '.join('--' + name.replace('_', '-') for name in space.budget())}")


def bootstrap_difference(a: Sequence[float], b: Sequence[float], seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of mean(a) - mean(b), runs resampled independently on each side."""
    rng = np.random.default_rng(seed)
    a_, b_ = np.asarray(a), np.asarray(b)
    means_a = a_[rng.integers(len(a_), size=(BOOTSTRAP_SAMPLES, len(a_)))].mean(1)
    means_b = b_[rng.integers(len(b_), size=(BOOTSTRAP_SAMPLES, len(b_)))].mean(1)
    low, high = np.percentile(means_a - means_b, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


WARM = "+warm"
"""The suffix of a strategy's row run with ``warm_start`` (``evolution+warm``)."""
REACH = "evolution"
"""The strategy whose mean at the full budget the others' "queries to reach" are counted against."""


def queries_to_reach(mean_curve: Sequence[float], target: float) -> int | None:
    """The first query count at which a mean best-so-far curve reaches ``target`` (None: not within the budget)."""
    return next((q for q, value in enumerate(mean_curve, 1) if value >= target - 1e-9), None)


def run_benchmark(space_name: str, table_path: str, strategies: Sequence[str], queries: int = 150, runs: int = 100,
                  first_seed: int = 0, noise: float = 0.0, max_params: float | None = None,
                  metric: str | None = None, proxies: Sequence[str] = (), proxy_table: str | None = None,
                  warm_start: int = 0, max_latency_ms: float | None = None) -> dict[str, Any]:
    """Run every strategy ``runs`` times on the table; random search always runs, as the reference. ``proxies``
    (columns of ``proxy_table``; several vote) give the searches a zero-cost proxy; ``warm_start`` > 0 adds, for
    each strategy that takes the option, a row ``<name>+warm`` run with it, compared with the plain row. A budget
    counts parameters and times latency (``spaces.latency``: batch 1, one CPU thread, cached) of the space's default
    network (C=16, N=5, 32x32 input); ``found`` holds each run's final incumbent (key)."""
    space = create_space(space_name)
    size = math.prod(space.choices())
    check(queries <= size, f"--queries {queries} is more than the {space_name} space's {size} architectures; "
                           f"ask for at most {size}")
    names = list(dict.fromkeys(["random", *strategies]))
    methods = {name: search_method(name) for name in names}
    needy = [name for name in names if methods[name].needs_proxy]
    check(not needy or bool(proxies), f"{', '.join(needy)} ranks architectures by a zero-cost proxy: pass --proxy "
                                      "(a column of the proxy table, e.g. synflow, or several that vote)")
    warm = [name for name in names if warm_start and "warm_start" in inspect.signature(methods[name].search).parameters]
    check(not warm_start or bool(warm), f"--warm-start {warm_start}: none of {', '.join(names)} takes a warm start "
                                        "(evolution and predictor do)")
    check(not warm_start or bool(proxies), f"--warm-start {warm_start} picks the first architectures by a zero-cost "
                                           "proxy: pass --proxy too")
    table = BenchmarkTable.read(table_path, space, metric)
    budgeted = max_params is not None or max_latency_ms is not None  # the benchmark network: C=16, N=5 where taken
    searched = space.with_budget(max_params, max_latency_ms, **space.sized(16, 5)) if budgeted else space
    best_key = best_within(table, searched)
    proxy = ProxyTable.read(proxy_table or PROXY_TABLE, searched, list(proxies)).scorer() if proxies else None
    rows: dict[str, tuple[str, dict[str, int]]] = {name: (name, {}) for name in names}
    rows |= {name + WARM: (name, {"warm_start": warm_start}) for name in warm}
    curves: dict[str, list[list[float]]] = {row: [] for row in rows}
    hits: dict[str, list[list[bool]]] = {row: [] for row in rows}
    found: dict[str, list[str]] = {row: [] for row in rows}
    with tqdm(total=len(rows) * runs * queries, desc="benchmark", unit="query", leave=False) as progress:
        for row, (name, options) in rows.items():
            for seed in range(first_seed, first_seed + runs):
                progress.set_postfix_str(f"{row} seed {seed}")
                evaluations = Evaluations(TableEvaluator(table, noise, seed), queries, on_queries=progress.update,
                                          proxy=proxy)
                methods[name].search(searched, evaluations, seed, **options)
                curve, hit = incumbent_curve(table, evaluations, best_key)
                pad = queries - len(curve)  # a run that ran out of new architectures keeps its incumbent
                curves[row].append(curve + curve[-1:] * pad)
                hits[row].append(hit + hit[-1:] * pad)
                found[row].append(table.space.key(max(evaluations.history, key=lambda item: item[1])[0]))
                progress.update(pad)
    budgets = [q for q in CHECKPOINTS if q < queries] + [queries]
    reported = [*strategies, *(name + WARM for name in warm)]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name in reported:
        summary[name] = {}
        for q in budgets:
            values = [curve[q - 1] for curve in curves[name]]
            summary[name][str(q)] = {
                "mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4),
                "optimum_hits": sum(hit[q - 1] for hit in hits[name]),
                "vs_random": bootstrap_difference(values, [curve[q - 1] for curve in curves["random"]], seed=q),
            }
            if name.endswith(WARM):  # the same strategy without its warm start, on the same seeds
                plain = [curve[q - 1] for curve in curves[name.removesuffix(WARM)]]
                summary[name][str(q)]["vs_plain"] = bootstrap_difference(values, plain, seed=q)
    means = {name: np.mean(curves[name], 0) for name in reported}
    title = (f"{space_name}, {table.metric}, {runs} runs (seeds {first_seed}-{first_seed + runs - 1}), noise sd {noise:g}"
             + "".join(f", {limit}" for limit in searched.budget().values())
             + (f", proxy {'+'.join(proxies)}" if proxies else "") + (f", warm start {warm_start}" if warm else ""))
    result = {"space": space_name, "table": str(table_path), "metric": table.metric, "table_best": table.best,
              "best_proposable": table.scores[best_key], "queries": queries, "runs": runs, "first_seed": first_seed,
              "noise": noise, "max_params": max_params, "max_latency_ms": max_latency_ms, "title": title,
              "strategies": summary, "found": {name: found[name] for name in reported},
              "curves": {name: {"mean": means[name].round(4).tolist(),
                                "sd": np.std(curves[name], 0, ddof=1).round(4).tolist()} for name in reported}}
    if proxies:
        result |= {"proxies": list(proxies), "proxy_table": str(proxy_table or PROXY_TABLE), "warm_start": warm_start}
    if REACH in reported:
        target = float(np.mean(curves[REACH], 0)[-1])
        result["reach"] = {"target": round(target, 4), "of": f"{REACH} at {queries} queries",
                           "queries": {name: queries_to_reach(means[name], target) for name in reported}}
    return result


def format_table(result: dict[str, Any]) -> str:
    """The summary as text: one row per strategy and budget."""
    width = max(10, *map(len, result["strategies"]))
    lines = [result["title"], f"table best {result['table_best']:.2f} (best proposable {result['best_proposable']:.2f}, "
                              f"the 'optimum'); incumbents read at their true {result['metric']}",
             f"{'strategy':<{width}} {'queries':>7} {'mean':>9} {'sd':>7} {'optimum':>8}  vs random (95 % CI)"]
    for name, rows in result["strategies"].items():
        for q, row in rows.items():
            low, high = row["vs_random"]
            lines.append(f"{name:<{width}} {q:>7} {row['mean']:>9.3f} {row['sd']:>7.3f} {row['optimum_hits']:>8}  "
                         f"{(low + high) / 2:+.3f} [{low:+.3f}, {high:+.3f}]"
                         + ("  vs without warm start {:+.3f} [{:+.3f}, {:+.3f}]".format(
                             sum(row["vs_plain"]) / 2, *row["vs_plain"]) if "vs_plain" in row else ""))
    if "reach" in result:
        reach = result["reach"]
        lines.append(f"queries to reach {reach['of']} ({reach['target']:.3f}, mean over runs): " + ", ".join(
            f"{name} {q if q is not None else 'not within ' + str(result['queries'])}"
            for name, q in reach["queries"].items()))
    return "\n".join(lines)
