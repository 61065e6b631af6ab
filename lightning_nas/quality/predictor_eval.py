"""How well does the PNAS predictor rank cells one block larger than those it learned from? (PNAS, Algorithm 2.)

For each level b and each of T repeats: train K random b-block cells, fit the predictor ensemble on them, predict M
random (b+1)-block cells, train those too, and take the Spearman rank correlation between predicted and true
accuracies. This is what a search asks of its predictor at every level, measured on uniform samples instead of the
beam the predictor chose itself, so it isolates the predictor from the search.

Everything comes from the PNAS search recipe: the proxy budget and held-out data candidates are scored on, and the
predictor's kind, epochs, learning rate and ensemble size; so the figure is about the predictor as that search uses it
(the report's retrain budget scores a different quantity, on the test images). Candidates are trained by the search's
own ``CandidatePool`` into ``<report output_dir>/predictor_eval/results.jsonl``: a killed report resumes without
retraining them, and a cell drawn twice is trained once.

The random cells of level b in repeat t are the first distinct cells of a stream seeded by (random seed, b, t), so the
(b+1)-block cells level b tests on in repeat t are also the first of those level b+1 learns from in repeat t: the
levels share their training, not their verdicts (each level's predictor is tested on cells one block larger than any
it saw).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lightning_nas.errors import check
from lightning_nas.quality.proxy import cell_ops, proxy_budget, random_cells, search_from_recipe
from lightning_nas.strategies.pnas import PNASSearch
from lightning_nas.strategies.pnas_progress import spearman


@dataclass
class PredictorEval:
    """The report's ``predictor_eval`` section (absent: not run). ``levels`` default to 1..B-1 of the search."""

    K: int = 16
    """Random b-block cells trained per repeat; the predictor fits on them."""
    M: int = 16
    """Random (b+1)-block cells trained per repeat; the predictor is scored on them."""
    T: int = 3
    """Repeats per level, each with its own random cells."""
    levels: list[int] | None = None
    only: bool = False
    """Run this evaluation alone: no searches and no retraining (an earlier report.json keeps its other results)."""


TOO_FEW = ("predictor_eval", "lower K or M")
"""Whom ``random_cells`` names when the space is too small, and the fix."""


class PredictorEvaluation:
    """Algorithm 2 of the PNAS paper with the predictor, proxy budget and candidate training of ``search``."""

    def __init__(self, search: PNASSearch, options: PredictorEval, random_seed: int) -> None:
        o, B, ops = options, search.B, cell_ops(search)
        check(o.K >= max(2, search.ensemble_size),
              f"predictor_eval.K={o.K}: the predictor fits on K cells, one held-out fold per member of its "
              f"ensemble_size={search.ensemble_size} ensemble; set K to at least {max(2, search.ensemble_size)}")
        check(o.M >= 2, f"predictor_eval.M={o.M}: a Spearman correlation needs at least 2 cells; set M to 2 or more")
        check(o.T >= 1, f"predictor_eval.T={o.T}: give at least 1 repeat (3 or more to see a spread)")
        levels = list(range(1, B)) if o.levels is None else list(o.levels)
        check(B >= 2, f"predictor_eval needs cells of at least 2 blocks, but the search has B={B}: use a search "
                      f"config with B >= 2")
        check(bool(levels) and all(1 <= b <= B - 1 for b in levels),
              f"predictor_eval.levels={levels}: each level b must be in 1..{B - 1} (B-1 for the search's B={B}), since "
              f"the predictor is tested on b+1 blocks; e.g. levels: {list(range(1, B))}")
        self.search, self.options, self.levels = search, o, sorted(set(levels))
        self.cells = {(b, t): (random_cells(f"{random_seed}/{b}/{t}", b, o.K, ops, *TOO_FEW),
                               random_cells(f"{random_seed}/{b + 1}/{t}", b + 1, o.M, ops, *TOO_FEW))
                      for b in self.levels for t in range(o.T)}
        """Per (level, repeat): the cells the predictor learns from and the cells it is scored on, drawn up front."""

    @classmethod
    def from_recipe(cls, search_config: str, search_args: Sequence[str], output_dir: Path, options: PredictorEval,
                    random_seed: int) -> PredictorEvaluation:
        """Build the search its recipe describes (with the report's search overrides), its candidates kept in
        ``output_dir``."""
        return cls(search_from_recipe(search_config, search_args, output_dir), options, random_seed)

    def repeat(self, b: int, t: int) -> dict[str, Any]:
        """One repeat of level b: fit on its K b-block cells, score on its M (b+1)-block cells."""
        learned, tested = self.cells[b, t]
        search, predictors = self.search, self.search.predictors
        records = search.train_cells(f"predictor_eval b={b} t={t} fit", learned)
        accuracy = [record["accuracy"] for record in search.train_cells(f"predictor_eval b={b} t={t} test", tested)]
        predictor = predictors.new(search.seed + 1000 * t + b)
        out_of_fold = predictors.fit(predictor, records)
        predicted = predictors.predict(predictor, tested)
        return {"spearman": spearman(predicted, accuracy), "out_of_fold_spearman": out_of_fold,
                "cells": [cell.key() for cell in tested], "predicted": predicted, "accuracy": accuracy}

    def run(self) -> dict[str, Any]:
        search, o = self.search, self.options
        with search.session():
            levels = []
            for b in self.levels:
                repeats = [self.repeat(b, t) for t in range(o.T)]
                values = [r["spearman"] for r in repeats]
                levels.append({"b": b, "spearman": values, "mean": statistics.fmean(values),
                               "std": statistics.stdev(values) if len(values) > 1 else 0.0, "repeats": repeats})
        return {"K": o.K, "M": o.M, "T": o.T, "proxy": proxy_budget(search),
                "predictor": {"kind": search.predictor_kind, "epochs": search.predictor_epochs,
                              "lr": search.predictor_lr, "ensemble_size": search.ensemble_size},
                "results_file": str(search.results.path), "levels": levels}


def format_predictor_table(evaluation: dict[str, Any]) -> str:
    """Per level: the Spearman of each repeat on the (b+1)-block cells, their mean ± std, and the mean out-of-fold
    Spearman on the b-block cells it fit (low there too: it could not even learn level b from K cells)."""
    e = evaluation
    width = 7 * e["T"] + 2
    lines = [f"PNAS predictor (Algorithm 2): fit on K={e['K']} random b-block cells, Spearman on M={e['M']} random "
             f"(b+1)-block cells, {e['T']} repeats",
             f"{'b -> b+1':<10}{'per repeat':<{width}}{'mean ± std':>16}{'out-of-fold on b':>19}"]
    for level in e["levels"]:
        repeats = "".join(f"{value:>7.3f}" for value in level["spearman"])
        out_of_fold = statistics.fmean(r["out_of_fold_spearman"] for r in level["repeats"])
        lines.append(f"{level['b']} -> {level['b'] + 1:<5}{repeats:<{width}}{level['mean']:>9.3f} ± {level['std']:.3f}"
                     f"{out_of_fold:>19.3f}")
    return "\n".join(lines)
