"""``python -m lightning_nas.benchmark describe --table nb201-fmnist``: how far a built table can be trusted.

Noise: over the cells trained with two seeds, the Spearman rank correlation between the seeds and the sd of one
cell's two runs beside the sd between cells. Agreement: over the table's cells, the Spearman correlation with
another table of the same space (``--against``, NAS-Bench-201's CIFAR-10 by default), and that table's mean for the
table's top 1 % of cells beside its mean over all of them.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any, Sequence

import numpy as np
from scipy.stats import spearmanr

from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.errors import ConfigError, OneLineParser
from lightning_nas.spaces import create_space


def describe(table: BenchmarkTable, against: BenchmarkTable) -> dict[str, Any]:
    repeated = [runs[:2] for runs in table.runs.values() if len(runs) >= 2]
    keys = list(table.scores)
    ours = np.array([table.scores[k] for k in keys])
    theirs = np.array([against.scores[k] for k in keys])
    top = np.argsort(-ours)[: max(1, round(len(keys) / 100))]
    result: dict[str, Any] = {
        "table": table.path, "cells": len(keys), "mean": round(float(ours.mean()), 3), "sd": round(float(ours.std()), 3),
        "best": round(float(ours.max()), 3), "cell_cpu_s": round(statistics.fmean(table.cpu_s), 2) if table.cpu_s else None,
        "against": against.path, "spearman_against": round(float(spearmanr(ours, theirs).statistic), 3),
        "against_top1pct_mean": round(float(theirs[top].mean()), 3), "against_mean": round(float(theirs.mean()), 3),
        "against_best_in_sample": round(float(theirs.max()), 3), "repeated_cells": len(repeated)}
    if len(repeated) >= 3:
        first, second = np.array(repeated).T
        result.update({"spearman_between_seeds": round(float(spearmanr(first, second).statistic), 3),
                       "sd_between_seeds": round(float(np.std(first - second, ddof=1) / np.sqrt(2)), 3),
                       "sd_between_cells_repeated": round(float(np.std((first + second) / 2, ddof=1)), 3)})
    return result


def format_description(result: dict[str, Any]) -> str:
    lines = [f"{result['table']}: {result['cells']} cells, mean {result['mean']:.2f}, sd {result['sd']:.2f}, best "
             f"{result['best']:.2f}" + (f", {result['cell_cpu_s']:.1f} CPU-s a cell" if result["cell_cpu_s"] else "")]
    if "spearman_between_seeds" in result:
        lines.append(f"noise over {result['repeated_cells']} cells trained with two seeds: Spearman between seeds "
                     f"{result['spearman_between_seeds']:.3f}; sd of one cell's runs {result['sd_between_seeds']:.2f} "
                     f"against sd between those cells {result['sd_between_cells_repeated']:.2f}")
    lines.append(f"against {result['against']}: Spearman {result['spearman_against']:.3f} over the same cells; its "
                 f"mean for this table's top 1 % {result['against_top1pct_mean']:.2f} (all sampled cells "
                 f"{result['against_mean']:.2f}, best of them {result['against_best_in_sample']:.2f})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = OneLineParser(prog="python -m lightning_nas.benchmark describe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="a shipped table's name or a CSV")
    parser.add_argument("--against", default="nb201-cifar10", help="a complete table of the same space")
    parser.add_argument("--space", default="nb201")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    try:
        space = create_space(args.space)
        table = BenchmarkTable.read(resolve_table(args.table), space, complete=False)
        result = describe(table, BenchmarkTable.read(resolve_table(args.against), space))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_description(result))
    if args.json:
        from lightning_nas.files import write_atomic

        write_atomic(args.json, json.dumps(result, indent=1) + "\n")
    return result
