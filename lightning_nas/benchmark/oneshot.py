"""One-shot searches judged by look-up: each search runs as its recipe does, in a process of one thread, and its
derived cell is looked up in a table built under one budget (``benchmark build``), or trained under that budget and
added when the table lacks it.

For every search: the cell, its table score, its percentile among the table's cells, its CIFAR-10 accuracy in
NAS-Bench-201's table, and the search's CPU-seconds. For every strategy: mean, sd and median percentile of its
cells, and 95 % bootstrap intervals of its mean's difference from a random cell of the table and from random search
given the same CPU-seconds (the best of K random table cells, K = the search's CPU-seconds over one cell's); and,
noise-free, the interval of its cells' CIFAR-10 accuracy minus a random cell's in NAS-Bench-201's table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lightning_nas.benchmark.build import Budget, TableBuild, table_budget
from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import write_atomic
from lightning_nas.spaces import SearchSpace, create_space

BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class OneShot:
    """A one-shot strategy as the benchmark runs it: its recipe module and shipped config."""

    recipe: str
    config: str


ONE_SHOT = {
    "darts": OneShot("darts", "darts_nb201_fmnist"),
    "gdas": OneShot("darts", "gdas_nb201_fmnist"),
    "betadarts": OneShot("darts", "betadarts_nb201_fmnist"),
    "enas": OneShot("enas", "enas_nb201_fmnist"),
    "rsps": OneShot("rsps", "rsps_nb201_fmnist"),
}
"""The one-shot strategies on NAS-Bench-201's supernet with Fashion-MNIST (``recipes/<config>.yaml``)."""


def run_search(name: str, seed: int, folder: Path) -> dict[str, Any]:
    """Run one search in a child process of one thread (its output in ``folder/log.txt``) and return its cell and
    CPU-seconds; a search finished before (``folder/result.json``) is read, not rerun."""
    result_path = folder / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if folder.exists():  # a search killed midway starts again from nothing
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    from lightning_nas.recipes import config_path

    strategy = ONE_SHOT[name]
    command = [sys.executable, "-m", f"lightning_nas.recipes.{strategy.recipe}", "fit", "--config",
               str(config_path(strategy.config)), "--seed_everything", str(seed),
               "--trainer.default_root_dir", str(folder / "run"), "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    genotypes = sorted((folder / "run").rglob("genotype.json"))
    if process.returncode != 0 or len(genotypes) != 1:
        tail = (folder / "log.txt").read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise ConfigError(f"{name} search seed {seed} failed (exit {process.returncode}): {tail[0]} "
                          f"(log: {folder / 'log.txt'})")
    result = {"seed": seed, "arch": json.loads(genotypes[0].read_text())["arch"],
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "wall_s": round(time.perf_counter() - start, 1)}
    write_atomic(result_path, json.dumps(result) + "\n")
    return result


def percentile(value: float, population: np.ndarray) -> float:
    """The share of ``population`` below ``value`` in percent, ties counted half."""
    return round(float(100 * ((population < value).mean() + 0.5 * (population == value).mean())), 2)


def interval(differences: np.ndarray) -> list[float]:
    low, high = np.percentile(differences, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def verdict(scores: Sequence[float], cpu_s: Sequence[float], table: np.ndarray, cell_cpu_s: float,
            seed: int = 0) -> dict[str, Any]:
    """Bootstrap intervals of mean(scores) minus a random table cell, and minus random search given each run's
    CPU-seconds (the best of K uniform draws from the table, K = cpu_s / cell_cpu_s, at least 1)."""
    rng = np.random.default_rng(seed)
    found = np.asarray(scores)
    runs = rng.integers(len(found), size=(BOOTSTRAP_SAMPLES, len(found)))
    budgets = np.maximum(1, np.round(np.asarray(cpu_s) / cell_cpu_s)).astype(int)
    best_of_k = np.array([[table[rng.integers(len(table), size=budgets[r])].max() for r in row] for row in runs])
    return {"vs_random": vs_random_cell(found, table, rng),
            "vs_random_search": interval(found[runs].mean(1) - best_of_k.mean(1)),
            "random_search_cells": [int(k) for k in budgets]}


def vs_random_cell(found: np.ndarray, table: np.ndarray, rng: np.random.Generator) -> list[float]:
    """95 % bootstrap interval of mean(found) minus the mean of a random cell of ``table``."""
    found_means = found[rng.integers(len(found), size=(BOOTSTRAP_SAMPLES, len(found)))].mean(1)
    return interval(found_means - table[rng.integers(len(table), size=(BOOTSTRAP_SAMPLES, len(table)))].mean(1))


def score_cells(table: BenchmarkTable, budget: Budget, archs: Sequence[str], workers: int,
                added_path: Path) -> dict[str, float]:
    """Each cell's table score; the cells the table lacks are trained under its ``budget`` into ``added_path`` (a
    table of its own, bound to the same budget) and scored from there."""
    space = table.space
    keys = {a: space.key(space.from_string(a)) for a in archs}
    missing = [a for a, key in keys.items() if key not in table.scores]
    scores = {a: table.scores[key] for a, key in keys.items() if a not in missing}
    if missing:
        build = TableBuild(space.name, budget, added_path)
        records = build.run([(a, 0) for a in missing], workers)
        by_arch = {r["arch"]: r["heldout_acc"] for r in records.values()}
        scores.update({a: by_arch[a] for a in missing})
    return scores


def run_oneshot(space: SearchSpace, table_name: str, strategies: Sequence[str], runs: int, first_seed: int,
                workers: int, workdir: Path, data: str | None = None) -> dict[str, Any]:
    """Run ``runs`` searches of each strategy (seeds ``first_seed`` onwards), ``workers`` at a time, and judge their
    cells against the table."""
    check(space.name == "nb201", f"the one-shot strategies search NAS-Bench-201's supernet; got --space {space.name}")
    table_path = resolve_table(table_name)
    table = BenchmarkTable.read(table_path, space, complete=False)
    budget = table_budget(table_path)
    check(data is None or data == budget.data, f"--data {data}: the table was trained on {budget.data}; "
                                               f"pass that or another table")
    check(bool(table.cpu_s), f"{table_path} has no cpu_s column: random search's cost per cell is unknown")
    cifar10 = BenchmarkTable.read(resolve_table("nb201-cifar10"), space)
    jobs = [(name, seed) for name in strategies for seed in range(first_seed, first_seed + runs)]
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(lambda job: run_search(job[0], job[1], workdir / job[0] / f"seed{job[1]}"), jobs))
    scores = score_cells(table, budget, [f["arch"] for f in found], workers, workdir / "added_cells.csv")
    population = np.asarray(list(table.scores.values()))
    cifar10_population = np.asarray(list(cifar10.scores.values()))
    cell_cpu_s = statistics.fmean(table.cpu_s)
    summary: dict[str, Any] = {}
    for name in strategies:
        rows = []
        for result in (f for (n, _), f in zip(jobs, found) if n == name):
            score = scores[result["arch"]]
            rows.append({**result, "score": score, "percentile": percentile(score, population),
                         "cifar10": cifar10.lookup(space.from_string(result["arch"]))})
        values = [row["score"] for row in rows]
        summary[name] = {"runs": rows, "mean": round(statistics.fmean(values), 3),
                         "sd": round(statistics.stdev(values), 3),
                         "percentile_median": statistics.median(row["percentile"] for row in rows),
                         "cifar10_mean": round(statistics.fmean(row["cifar10"] for row in rows), 3),
                         "cifar10_vs_random": vs_random_cell(np.array([row["cifar10"] for row in rows]),
                                                             cifar10_population, np.random.default_rng(1)),
                         **verdict(values, [row["cpu_s"] for row in rows], population, cell_cpu_s)}
    return {"space": space.name, "table": str(table_path), "metric": table.metric, "cells": len(population),
            "table_mean": round(float(population.mean()), 3), "table_best": round(float(population.max()), 3),
            "cell_cpu_s": round(cell_cpu_s, 2), "runs": runs, "first_seed": first_seed, "strategies": summary}


def oneshot_png(result: dict[str, Any]) -> bytes:
    """The found cells' table scores per one-shot strategy beside the table's cells."""
    from lightning_nas.plots import groups_png

    table = BenchmarkTable.read(result["oneshot"]["table"], create_space(result["oneshot"]["space"]), complete=False)
    groups = {f"table ({len(table.scores)})": list(table.scores.values())}
    groups.update({name: [run["score"] for run in row["runs"]] for name, row in result["strategies"].items()
                   if name in ONE_SHOT})
    return groups_png(groups, result["oneshot"]["metric"], f"one-shot cells on {Path(result['oneshot']['table']).name}")


def format_oneshot(result: dict[str, Any]) -> str:
    """One row per strategy, then each search's cell."""
    lines = [f"{result['space']}: one-shot searches judged on {result['table']} ({result['cells']} cells, mean "
             f"{result['table_mean']:.2f}, best {result['table_best']:.2f}; a cell costs {result['cell_cpu_s']:.0f} "
             f"CPU-s), seeds {result['first_seed']}-{result['first_seed'] + result['runs'] - 1}",
             f"{'strategy':<10} {'mean':>7} {'sd':>6} {'pct med':>7} {'cifar10':>7}  {'vs random cell':<20}"
             f"{'vs random search (same CPU)':<30}{'cifar10 vs random cell'}"]
    for name, row in result["strategies"].items():
        lines.append(f"{name:<10} {row['mean']:>7.2f} {row['sd']:>6.2f} {row['percentile_median']:>7.1f} "
                     f"{row['cifar10_mean']:>7.2f}  [{row['vs_random'][0]:+.2f}, {row['vs_random'][1]:+.2f}]"
                     f"{'':<6}[{row['vs_random_search'][0]:+.2f}, {row['vs_random_search'][1]:+.2f}]{'':<14}"
                     f"[{row['cifar10_vs_random'][0]:+.2f}, {row['cifar10_vs_random'][1]:+.2f}]")
    for name, row in result["strategies"].items():
        for run in row["runs"]:
            lines.append(f"  {name} seed {run['seed']}: {run['arch']} score {run['score']:.2f} (pct "
                         f"{run['percentile']:.0f}), cifar10 {run['cifar10']:.2f}, {run['cpu_s']:.0f} CPU-s")
    return "\n".join(lines)
