"""``python -m lightning_nas.benchmark latency --table nb201-cifar10``: how parameters and FLOPs rank NAS-Bench-201's
networks against their measured latency on this machine, and what a latency budget changes in the cells a search
finds.

1. Stability: ``--spread-cells`` cells of the sample, each timed ``--spread-times`` times afresh (batch 1), by the
   clock the cache uses (one thread's CPU time) and by the wall clock, with the machine's load average: how far one
   latency figure can be trusted here.
2. Ranking: a uniform sample of ``--cells`` cells (seeded by ``--seed``), each with its parameters, FLOPs
   (``SearchSpace.num_params``, ``num_flops``) and its latency at batch 1 and at batch ``--batch`` (one CPU thread,
   ``spaces.latency``, cached); Spearman's rank correlation between each pair; and which of these cells a budget at
   the ``--quantile`` of each cost admits (their accuracy and op mix). The first ``--retest`` cells are timed once
   more afresh: how well two timings of the same cells agree bounds what any proxy can reach here.
3. Budgets: every cell of the table timed at batch 1 (cached, so measured once per machine), a latency budget set at
   the ``--quantile`` of the cells' latencies and a parameter budget at the same quantile of their parameter counts;
   the benchmark (``runs.run_benchmark``) under each, and the cells its runs found: mean accuracy, latency,
   parameters, the share of each op on their edges, and how many fit the other budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections import Counter
from functools import partial
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from lightning_nas.benchmark.runs import run_benchmark
from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.errors import ConfigError, OneLineParser
from lightning_nas.spaces import create_space
from lightning_nas.spaces.latency import LatencySetting, LatencyTable, Network, measure_latency, time_forward

NETWORK: Network = (10, 3, {"C": 16, "N": 5})
"""NAS-Bench-201's CIFAR-10 network: 10 classes, 3 channels, C=16, N=5 (the benchmark's budgets count this one)."""
OPS = ("nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none")


def op_mix(texts: Sequence[str]) -> dict[str, float]:
    """The share of each op over all edges of NAS-Bench-201 cells in their string form."""
    counts = Counter(op for text in texts for op in re.findall(r"\|(\w+)~\d", text))
    total = sum(counts.values()) or 1
    return {op: round(counts[op] / total, 4) for op in sorted(counts)}


def stability(space: Any, cells: Sequence[Any], times: int) -> list[dict[str, Any]]:
    """Each cell timed ``times`` times afresh at batch 1 on one thread, by thread CPU time and by wall clock."""
    setting, rows = LatencySetting(), []
    for arch in cells:
        row: dict[str, Any] = {"arch": space.to_string(arch)}
        for clock, timer in (("thread_cpu", time_forward), ("wall", partial(time_forward, clock=time.perf_counter))):
            figures = [measure_latency(space, arch, NETWORK, setting, timer) for _ in range(times)]
            median = statistics.median(figures)
            row[clock] = {"median": round(median, 3), "min": round(min(figures), 3), "max": round(max(figures), 3),
                          "spread": round((max(figures) - min(figures)) / median, 4), "figures": figures}
        rows.append(row)
    return rows


def retest(space: Any, cells: Sequence[Any], tables: Mapping[int, LatencyTable],
           columns: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """The first cells timed once more afresh at each batch size: Spearman's rho between the two timings of the
    same cells, the ceiling any cost proxy's correlation with one timing can reach on this machine now."""
    result = {}
    for size, table in tables.items():
        fresh = [measure_latency(space, arch, NETWORK, table.setting) for arch in cells]
        result[f"ms_b{size}"] = {"cells": len(cells), "fresh": fresh,
                                 "spearman": round(float(spearmanr(columns[f"ms_b{size}"][:len(cells)], fresh)[0]), 4)}
    return result


def rank_correlations(columns: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Spearman's rho of every pair of columns, named ``a~b``."""
    names = list(columns)
    return {f"{a}~{b}": round(float(spearmanr(columns[a], columns[b])[0]), 4)
            for i, a in enumerate(names) for b in names[i + 1:]}


def admitted(table: BenchmarkTable, texts: Sequence[str], columns: Mapping[str, Sequence[float]],
             quantile: float) -> dict[str, Any]:
    """Which of the sample's cells a budget at the ``quantile`` of each cost (latency at batch 1, parameters, FLOPs)
    admits: how many, their best and mean accuracy, mean latency, op mix, and how many the latency budget admits too."""
    space, summary = table.space, {}
    accuracy = [table.scores[space.key(space.from_string(text))] for text in texts]
    caps = {cost: float(np.quantile(columns[cost], quantile)) for cost in ("ms_b1", "params", "flops")}
    sets = {cost: {i for i, value in enumerate(columns[cost]) if value <= cap} for cost, cap in caps.items()}
    for cost, cap in caps.items():
        within, by_latency = sets[cost], sets["ms_b1"]
        summary[cost] = {"cap": cap, "cells": len(within), "best": max(accuracy[i] for i in within),
                         "mean": round(statistics.mean(accuracy[i] for i in within), 3),
                         "ms_b1": round(statistics.mean(columns["ms_b1"][i] for i in within), 3),
                         "also_within_latency": len(within & by_latency),
                         "op_mix": op_mix([texts[i] for i in within])}
    return summary


def found_cells(table: BenchmarkTable, result: dict[str, Any], ms: dict[str, float], params: dict[str, int],
                caps: dict[str, float]) -> dict[str, Any]:
    """Per strategy: the runs' found cells' mean accuracy, latency and parameters, op mix, and how many are within
    each budget."""
    space, summary = table.space, {}
    texts = {key: space.to_string(arch) for key, arch in ((space.key(a), a) for a in table.architectures())}
    for name, keys in result["found"].items():
        summary[name] = {
            "accuracy": round(statistics.mean(table.scores[k] for k in keys), 3),
            "ms": round(statistics.mean(ms[k] for k in keys), 3),
            "params": round(statistics.mean(params[k] for k in keys)),
            "within_latency": sum(ms[k] <= caps["ms"] for k in keys),
            "within_params": sum(params[k] <= caps["params"] for k in keys), "runs": len(keys),
            "op_mix": op_mix([texts[k] for k in keys]),
        }
    return summary


def report(table_name: str = "nb201-cifar10", cells: int = 500, batch: int = 32, seed: int = 0, quantile: float = 0.25,
           strategies: Sequence[str] = ("random", "evolution"), runs: int = 50, queries: int = 150,
           spread_cells: int = 5, spread_times: int = 10, first_seed: int = 0, budgets: bool = True,
           retest_cells: int = 100) -> dict[str, Any]:
    """The three parts of the report (the third only with ``budgets``)."""
    from lightning_nas.strategies.blackbox_search import sample_architectures

    space = create_space("nb201")
    path = str(resolve_table(table_name))
    table = BenchmarkTable.read(path, space)
    by_batch = {1: LatencyTable(space, NETWORK), batch: LatencyTable(space, NETWORK, LatencySetting(batch_size=batch))}
    load = {"before": os.getloadavg()}
    sample = list(sample_architectures(space, cells, seed).values())
    spread = stability(space, sample[:spread_cells], spread_times)
    columns: dict[str, list[float]] = {
        "params": [space.num_params(arch, 10, 3, C=16, N=5) for arch in sample],
        "flops": [space.num_flops(arch, 10, 3, C=16, N=5) for arch in sample]}
    for size, latency in by_batch.items():
        measured = latency.measure(sample)
        columns[f"ms_b{size}"] = [measured[space.key(arch)] for arch in sample]
    result = {"table": table_name, "metric": table.metric, "machine": by_batch[1].identity["device_name"],
              "cpus": os.cpu_count(), "load_average": load,
              "settings": {str(size): latency.describe() for size, latency in by_batch.items()},
              "sample": {"cells": cells, "seed": seed, "batch": batch}, "spread": spread,
              "spearman": rank_correlations(columns), "quantile": quantile,
              "retest": retest(space, sample[:retest_cells], by_batch, columns),
              "admitted": admitted(table, [space.to_string(arch) for arch in sample], columns, quantile),
              "cells": [{"arch": space.to_string(arch), **{name: values[i] for name, values in columns.items()}}
                        for i, arch in enumerate(sample)]}
    if budgets:
        result.update(budget_comparison(table, by_batch[1], quantile, strategies, runs, queries, first_seed))
    load["after"] = os.getloadavg()
    return result


def budget_comparison(table: BenchmarkTable, latency: LatencyTable, quantile: float, strategies: Sequence[str],
                      runs: int, queries: int, first_seed: int) -> dict[str, Any]:
    """Every cell of the table timed (in a seeded random order, so a killed run leaves a uniform sample cached),
    both budgets set at ``quantile``, the benchmark run under each and under none."""
    space, everything = table.space, list(table.architectures())
    ms = latency.measure(random.Random(0).sample(everything, len(everything)))
    params = {space.key(arch): space.num_params(arch, 10, 3, C=16, N=5) for arch in everything}
    caps = {"ms": float(np.quantile(list(ms.values()), quantile)),
            "params": float(np.quantile(list(params.values()), quantile))}
    budgets = {}
    for budget, limits in (("latency", {"max_latency_ms": caps["ms"]}), ("params", {"max_params": caps["params"]}),
                           ("none", {})):
        result = run_benchmark("nb201", table.path, strategies, queries, runs, first_seed,
                               max_params=limits.get("max_params"), max_latency_ms=limits.get("max_latency_ms"))
        within = {k for k in table.scores if ms[k] <= limits.get("max_latency_ms", np.inf)
                  and params[k] <= limits.get("max_params", np.inf)}
        budgets[budget] = {"limits": limits, "title": result["title"], "cells_within": len(within),
                           "best_within": result["best_proposable"],
                           "mean_within": round(statistics.mean(table.scores[k] for k in within), 3),
                           "within_op_mix": op_mix([space.to_string(a) for a in everything if space.key(a) in within]),
                           "strategies": {name: {q: row["mean"] for q, row in rows.items()}
                                          for name, rows in result["strategies"].items()},
                           "found": found_cells(table, result, ms, params, caps)}
    return {"caps": caps, "table_cells": len(ms), "runs": runs, "queries": queries,
            "budgets": budgets}


def format_report(result: dict[str, Any]) -> str:
    lines = [f"machine: {result['machine']}, {result['cpus']} CPUs, load average (1, 5, 15 min) before "
             f"{'/'.join(f'{v:.1f}' for v in result['load_average']['before'])}, after "
             f"{'/'.join(f'{v:.1f}' for v in result['load_average']['after'])}"]
    lines += [f"latency b{size}: {text}" for size, text in result["settings"].items()]
    lines.append("stability: each cell timed afresh (ms: median [min, max], (max-min)/median)")
    for row in result["spread"]:
        lines.append("  " + "   ".join(f"{clock} {r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}] {r['spread']:.0%}"
                                       for clock, r in ((c, row[c]) for c in ("thread_cpu", "wall")))
                     + f"  {row['arch']}")
    sample = result["sample"]
    lines.append(f"Spearman over {sample['cells']} uniformly drawn cells (seed {sample['seed']}):")
    lines += [f"  {pair:<16} {rho:+.3f}" for pair, rho in result["spearman"].items()]
    lines += [f"  {name} timed again {row['cells']} cells: {row['spearman']:+.3f} (the ceiling on this machine now)"
              for name, row in result["retest"].items()]
    lines.append(f"the sample's cells a budget at the {result['quantile']:g} quantile of each cost admits "
                 f"({result['metric']}):")
    lines.append(f"  {'cost':<7} {'cap':>10} {'cells':>5} {'best':>6} {'mean':>6} {'ms b1':>6} {'in lat':>6}  "
                 "conv3x3 conv1x1 pool skip none")
    for cost, row in result["admitted"].items():
        mix = row["op_mix"]
        lines.append(f"  {cost:<7} {row['cap']:>10.4g} {row['cells']:>5} {row['best']:>6.2f} {row['mean']:>6.2f} "
                     f"{row['ms_b1']:>6.2f} {row['also_within_latency']:>6}  "
                     + " ".join(f"{mix.get(op, 0):>7.2f}" for op in OPS))
    if "budgets" not in result:
        return "\n".join(lines)
    caps = result["caps"]
    lines.append(f"budgets at the {result['quantile']:g} quantile of the table's {result['table_cells']} cells: "
                 f"{caps['ms']:.3f} ms (batch 1) or {caps['params']:.0f} parameters; {result['runs']} runs of "
                 f"{result['queries']} queries, {result['metric']}")
    lines.append(f"{'budget':<8} {'cells':>6} {'best':>6} {'mean':>6}  {'strategy':<10} {'found acc':>9} {'ms':>6} "
                 f"{'params':>8} {'in lat':>6} {'in par':>6}  conv3x3 conv1x1 pool skip none")
    for budget, row in result["budgets"].items():
        for name, found in row["found"].items():
            mix = found["op_mix"]
            lines.append(f"{budget:<8} {row['cells_within']:>6} {row['best_within']:>6.2f} {row['mean_within']:>6.2f}  "
                         f"{name:<10} {found['accuracy']:>9.2f} {found['ms']:>6.2f} {found['params']:>8} "
                         f"{found['within_latency']:>6} {found['within_params']:>6}  "
                         + " ".join(f"{mix.get(op, 0):>7.2f}" for op in OPS))
    return "\n".join(lines)


def latency_png(result: dict[str, Any]) -> bytes:
    from matplotlib.figure import Figure

    from lightning_nas.plots import figure_png

    cells, rho = result["cells"], result["spearman"]
    figure = Figure(figsize=(15 if "budgets" in result else 10, 4.2))
    axes = figure.subplots(1, 3 if "budgets" in result else 2)
    for ax, name, label in ((axes[0], "params", "parameters"), (axes[1], "flops", "FLOPs")):
        ax.scatter([c[name] for c in cells], [c["ms_b1"] for c in cells], s=6, alpha=0.5)
        ax.set(xlabel=label, ylabel="ms, batch 1, one CPU thread",
               title=f"{label} vs latency: Spearman {rho[f'{name}~ms_b1']:+.2f}")
    if "budgets" not in result:
        figure.tight_layout()
        return figure_png(figure)
    ops = OPS
    width = 0.8 / max(1, sum(len(b["found"]) for b in result["budgets"].values()))
    bar = 0
    for budget, row in result["budgets"].items():
        for name, found in row["found"].items():
            axes[2].bar(np.arange(len(ops)) + bar * width, [found["op_mix"].get(op, 0) for op in ops], width,
                        label=f"{budget}: {name} ({found['accuracy']:.2f} %)")
            bar += 1
    axes[2].set_xticks(np.arange(len(ops)) + 0.4 - width / 2, [op.replace("_", " ") for op in ops], fontsize=8)
    axes[2].set(ylabel="share of the found cells' edges", title="op mix of found cells by budget")
    axes[2].legend(fontsize=7)
    figure.tight_layout()
    return figure_png(figure)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    parser = OneLineParser(prog="python -m lightning_nas.benchmark latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default="nb201-cifar10", help="a NAS-Bench-201 table (shipped name or CSV)")
    parser.add_argument("--cells", type=int, default=500, help="uniformly drawn cells the rank correlations use")
    parser.add_argument("--batch", type=int, default=32, help="the larger batch timed besides batch 1")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw of cells")
    parser.add_argument("--quantile", type=float, default=0.25, help="where both budgets are set among the cells")
    parser.add_argument("--strategies", default="random,evolution", help="comma-separated black-box strategies")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--spread-cells", type=int, default=5, help="cells timed repeatedly afresh")
    parser.add_argument("--spread-times", type=int, default=10, help="how often each of them is timed")
    parser.add_argument("--retest", type=int, default=100, help="sample cells timed once more afresh at both batches")
    parser.add_argument("--budgets", action=argparse.BooleanOptionalAction, default=True,
                        help="time every cell of the table (cached) and run the benchmark under both budgets")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a PNG here")
    args = parser.parse_args(argv)
    for name in ("cells", "batch", "runs", "queries", "spread_cells", "spread_times", "retest"):
        least = 2 if name in ("cells", "runs", "retest") else 1
        if getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}, got {getattr(args, name)}")
    if not 0 < args.quantile <= 1:
        parser.error(f"--quantile must be in (0, 1], got {args.quantile}")
    torch.set_num_threads(1)
    try:
        result = report(args.table, args.cells, args.batch, args.seed, args.quantile,
                        [s.strip() for s in args.strategies.split(",") if s.strip()], args.runs, args.queries,
                        min(args.spread_cells, args.cells), args.spread_times, args.first_seed, args.budgets,
                        min(args.retest, args.cells))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_report(result))
    from lightning_nas.files import write_atomic

    if args.json:
        write_atomic(args.json, json.dumps(result, indent=1, allow_nan=False) + "\n")
    if args.plot:
        write_atomic(args.plot, latency_png(result))
    return result
