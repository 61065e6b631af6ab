"""How reproducible is the accuracy a PNAS search ranks? The Spearman correlation between repeated training runs.

A search ranks its candidates (and fits its predictor) by one proxy training each. If training the same cells again
with another seed ranks them differently, no predictor and no beam can do better than that agreement: it bounds every
Spearman the search and ``predictor_eval`` report. So: draw random cells spread over 1..B blocks, train each ``runs``
times under the search recipe's own proxy budget and held-out images, with training seeds 0..runs-1 (the same for
every cell), and report the Spearman rank correlation between runs (the mean over pairs of runs), within each block
count too (a level of the search ranks cells of one size), and the accuracy spread between runs against the spread
between cells. With ``retrain: true`` each cell is also retrained under the report's retraining budget: the Spearman
between the proxy's mean accuracy and the retrained one says whether the proxy ranks cells as the retraining that
judges the search does, which between-run agreement alone cannot tell (a proxy can agree with itself and still favour
cells that learn fast over cells that end best).

The trainings go to ``<report output_dir>/target_noise/results.jsonl`` through the search's ``CandidatePool``: a
killed report resumes without retraining them.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lightning_nas.errors import check
from lightning_nas.genotypes import Genotype
from lightning_nas.quality.proxy import cell_ops, proxy_budget, random_cells, search_from_recipe
from lightning_nas.strategies.pnas import PNASSearch
from lightning_nas.strategies.pnas_progress import spearman


@dataclass
class TargetNoise:
    """The report's ``target_noise`` section (absent: not run)."""

    cells: int = 16
    """Random cells, spread evenly over 1..B blocks."""
    runs: int = 2
    """Training runs per cell, with seeds 0..runs-1."""
    only: bool = False
    """Run this measurement alone: no searches and no retraining of the report's architectures (an earlier
    report.json keeps its other results)."""
    retrain: bool = False
    """Also retrain the cells under the report's retraining budget and compare that ranking with the proxy's."""


def mean_spearman(runs: Sequence[Sequence[float]]) -> float:
    """The Spearman correlation between two runs' accuracies of the same cells, averaged over all pairs of runs."""
    return statistics.fmean(spearman(a, b) for a, b in itertools.combinations(runs, 2))


Retrain = Callable[[dict[str, Genotype]], dict[str, float]]
"""The report's retraining: architectures by key -> their retrained accuracy."""


class TargetNoiseMeasurement:
    """Train random cells several times each with the proxy budget and candidate pool of ``search``; compare runs
    (and, with ``options.retrain``, the proxy's ranking with that of ``retrained``)."""

    def __init__(self, search: PNASSearch, options: TargetNoise, random_seed: int,
                 retrained: Retrain | None = None) -> None:
        o, B, ops = options, search.B, cell_ops(search)
        check(o.cells >= 2, f"target_noise.cells={o.cells}: a Spearman correlation needs at least 2 cells; set cells to "
                            f"2 or more (16 or more for a figure that means something)")
        check(o.runs >= 2, f"target_noise.runs={o.runs}: runs are compared with each other, so give at least 2; set "
                           f"runs to 2 or more")
        check(retrained is not None or not o.retrain, "target_noise.retrain needs the report's retraining budget: run "
                                                      "it from the report (python -m lightning_nas.quality)")
        self.search, self.options, self.retrained = search, o, retrained
        self.cells = [cell for b in range(1, B + 1)
                      for cell in random_cells(f"{random_seed}/target_noise/{b}", b, len(range(b - 1, o.cells, B)),
                                               ops, "target_noise", "lower cells")]
        """The random cells, ``cells // B`` or one more of each size 1..B, drawn up front."""

    @classmethod
    def from_recipe(cls, search_config: str, search_args: Sequence[str], output_dir: Path, options: TargetNoise,
                    random_seed: int, retrained: Retrain | None = None) -> TargetNoiseMeasurement:
        return cls(search_from_recipe(search_config, search_args, output_dir), options, random_seed, retrained)

    def by_blocks(self, spearman_of: Callable[[list[int]], float]) -> list[dict[str, Any]]:
        """``spearman_of(indices)`` for the cells of each block count that has at least 3 (two always correlate at
        ±1)."""
        levels = []
        for b in range(1, self.search.B + 1):
            index = [i for i, cell in enumerate(self.cells) if len(cell) == b]
            if len(index) >= 3:
                levels.append({"b": b, "cells": len(index), "spearman": spearman_of(index)})
        return levels

    def run(self) -> dict[str, Any]:
        search, o = self.search, self.options
        with search.session():
            records = search.train_with_seeds("target_noise", self.cells, range(o.runs))
        runs = [[records[cell, seed]["accuracy"] for cell in self.cells] for seed in range(o.runs)]
        per_cell = list(zip(*runs))
        result = {"cells": len(self.cells), "runs": o.runs, "proxy": proxy_budget(search),
                  "results_file": str(search.results.path), "spearman": mean_spearman(runs),
                  "by_blocks": self.by_blocks(lambda index: mean_spearman([[run[i] for i in index] for run in runs])),
                  "run_spread": statistics.fmean(statistics.stdev(accuracy) for accuracy in per_cell),
                  "cell_spread": statistics.stdev(statistics.fmean(accuracy) for accuracy in per_cell),
                  "seconds_per_candidate": statistics.fmean(record["seconds"] for record in records.values()),
                  "accuracy": [{"key": cell.key(), "b": len(cell), "runs": list(accuracy)}
                               for cell, accuracy in zip(self.cells, per_cell)]}
        if o.retrain:
            result["retrain"] = self.against_retraining([statistics.fmean(accuracy) for accuracy in per_cell])
        return result

    def against_retraining(self, proxy: list[float]) -> dict[str, Any]:
        """The Spearman between the cells' mean proxy accuracies and their retrained accuracies, overall and per
        block count."""
        assert self.retrained is not None  # __init__ checked it
        accuracy = self.retrained({cell.key(): cell.to_genotype() for cell in self.cells})
        retrained = [accuracy[cell.key()] for cell in self.cells]
        return {"spearman": spearman(proxy, retrained), "accuracy": retrained,
                "by_blocks": self.by_blocks(lambda index: spearman([proxy[i] for i in index],
                                                                   [retrained[i] for i in index]))}


def format_noise_table(noise: dict[str, Any]) -> str:
    """The between-run Spearman, overall and per block count, and the accuracy spread between runs and cells."""
    n, p = noise, noise["proxy"]
    lines = [
        f"Target noise: {n['cells']} random cells trained {n['runs']} times each (seeds 0..{n['runs'] - 1}) under the "
        f"search's proxy budget N={p['N']} F={p['F']} epochs={p['epochs']} lr={p['lr']} (per {p['lr_interval']}) "
        f"limit_train_batches={p['limit_train_batches']}, {n['seconds_per_candidate']:.1f} s per training",
        f"Spearman between runs   {n['spearman']:.3f} (mean over pairs of runs){blocks_text(n['by_blocks'])}",
        f"accuracy spread         {n['run_spread']:.4f} between runs (mean std per cell), {n['cell_spread']:.4f} "
        f"between cells (std of the cell means)",
    ]
    if "retrain" in n:
        lines.append(f"proxy vs retraining     {n['retrain']['spearman']:.3f} (Spearman of the mean proxy accuracy and "
                     f"the report's retrained accuracy){blocks_text(n['retrain']['by_blocks'])}")
    return "\n".join(lines)


def blocks_text(levels: list[dict[str, Any]]) -> str:
    return "; by blocks: " + ", ".join(f"b={level['b']} {level['spearman']:.3f} ({level['cells']} cells)"
                                       for level in levels) if levels else ""
