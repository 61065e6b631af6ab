"""How reproducible is the accuracy a PNAS search ranks? The Spearman correlation between repeated training runs.

A search ranks its candidates (and fits its predictor) by one proxy training each. If training the same cells again
with another seed ranks them differently, no predictor and no beam can do better than that agreement: it bounds every
Spearman the search and ``predictor_eval`` report. So: draw random cells spread over 1..B blocks, train each ``runs``
times under the search recipe's own proxy budget and held-out images, with training seeds 0..runs-1 (the same for
every cell), and report the Spearman rank correlation between runs (the mean over pairs of runs), within each block
count too (a level of the search ranks cells of one size), and the accuracy spread between runs against the spread
between cells.

The trainings go to ``<report output_dir>/target_noise/results.jsonl`` through the search's ``CandidatePool``: a
killed report resumes without retraining them.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lightning_nas.errors import check
from lightning_nas.quality.proxy import proxy_budget, random_cells, search_from_recipe, search_threads
from lightning_nas.spaces.pnas import PNASCell
from lightning_nas.strategies.pnas import PNASSearch, spearman


@dataclass
class TargetNoise:
    """The report's ``target_noise`` section (absent: not run)."""

    cells: int = 16
    """Random cells, spread evenly over 1..B blocks."""
    runs: int = 2
    """Training runs per cell, with seeds 0..runs-1."""
    only: bool = False
    """Run this measurement alone: no searches and no retraining (an earlier report.json keeps its other results)."""


def mean_spearman(runs: Sequence[Sequence[float]]) -> float:
    """The Spearman correlation between two runs' accuracies of the same cells, averaged over all pairs of runs."""
    return statistics.fmean(spearman(a, b) for a, b in itertools.combinations(runs, 2))


class TargetNoiseMeasurement:
    """Train random cells several times each with the proxy budget and candidate pool of ``search``; compare runs."""

    def __init__(self, search: PNASSearch, options: TargetNoise, random_seed: int) -> None:
        o, B = options, search.B
        check(o.cells >= 2, f"target_noise.cells={o.cells}: a Spearman correlation needs at least 2 cells; set cells to "
                            f"2 or more (16 or more for a figure that means something)")
        check(o.runs >= 2, f"target_noise.runs={o.runs}: runs are compared with each other, so give at least 2; set "
                           f"runs to 2 or more")
        self.search, self.options = search, o
        self.cells = [cell for b in range(1, B + 1)
                      for cell in random_cells(f"{random_seed}/target_noise/{b}", b, len(range(b - 1, o.cells, B)),
                                               search.ops, "target_noise", "lower cells")]
        """The random cells, ``cells // B`` or one more of each size 1..B, drawn up front."""

    @classmethod
    def from_recipe(cls, search_config: str, search_args: Sequence[str], output_dir: Path, options: TargetNoise,
                    random_seed: int) -> TargetNoiseMeasurement:
        return cls(search_from_recipe(search_config, search_args, output_dir), options, random_seed)

    def trained(self) -> dict[tuple[PNASCell, int], dict[str, Any]]:
        """Every (cell, training seed)'s result record, training those the results file lacks."""
        pool = self.search.pool
        jobs = {f"{cell.key()}/seed{seed}": (cell, seed) for seed in range(self.options.runs) for cell in self.cells}

        def train(job: str) -> dict[str, Any]:
            cell, seed = jobs[job]
            return {**pool.train(job, cell.to_genotype(), seed=seed)[1], "b": len(cell), "seed": seed}

        return {jobs[job]: record for job, record in pool.train_all("target_noise", list(jobs), train).items()}

    def run(self) -> dict[str, Any]:
        search, o = self.search, self.options
        with search_threads(search), search.pool.running():
            records = self.trained()
        runs = [[records[cell, seed]["accuracy"] for cell in self.cells] for seed in range(o.runs)]
        per_cell = list(zip(*runs))
        by_blocks = []
        for b in range(1, search.B + 1):
            index = [i for i, cell in enumerate(self.cells) if len(cell) == b]
            if len(index) >= 3:  # two cells always correlate at ±1
                by_blocks.append({"b": b, "cells": len(index),
                                  "spearman": mean_spearman([[run[i] for i in index] for run in runs])})
        return {"cells": len(self.cells), "runs": o.runs, "proxy": proxy_budget(search),
                "results_file": str(search.pool.results.path), "spearman": mean_spearman(runs),
                "by_blocks": by_blocks,
                "run_spread": statistics.fmean(statistics.stdev(accuracy) for accuracy in per_cell),
                "cell_spread": statistics.stdev(statistics.fmean(accuracy) for accuracy in per_cell),
                "seconds_per_candidate": statistics.fmean(record["seconds"] for record in records.values()),
                "accuracy": [{"key": cell.key(), "b": len(cell), "runs": list(accuracy)}
                             for cell, accuracy in zip(self.cells, per_cell)]}


def format_noise_table(noise: dict[str, Any]) -> str:
    """The between-run Spearman, overall and per block count, and the accuracy spread between runs and cells."""
    n, p = noise, noise["proxy"]
    blocks = ", ".join(f"b={level['b']} {level['spearman']:.3f} ({level['cells']} cells)" for level in n["by_blocks"])
    return "\n".join([
        f"Target noise: {n['cells']} random cells trained {n['runs']} times each (seeds 0..{n['runs'] - 1}) under the "
        f"search's proxy budget N={p['N']} F={p['F']} epochs={p['epochs']} lr={p['lr']} "
        f"limit_train_batches={p['limit_train_batches']}, {n['seconds_per_candidate']:.1f} s per training",
        f"Spearman between runs   {n['spearman']:.3f} (mean over pairs of runs){'; by blocks: ' + blocks if blocks else ''}",
        f"accuracy spread         {n['run_spread']:.4f} between runs (mean std per cell), {n['cell_spread']:.4f} "
        f"between cells (std of the cell means)",
    ])
