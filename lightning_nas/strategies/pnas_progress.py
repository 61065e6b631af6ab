"""What a PNAS search tells about itself, level by level: its progress and the predictor's rank correlations.

Rank 0 keeps ``progress.json`` (per level: candidates, best cell, the predictor's Spearman correlations: on the beam it
chose, on a random sample of the whole expansion, and out-of-fold) and a predicted-vs-true accuracy scatter per level
under ``plots/``; with a ``logger`` it logs them too (W&B: a candidates table, the best cell's diagram where it is a
Genotype, the scatters and the genotype artifact, one run per search).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.files import write_atomic
from lightning_nas.genotypes import Genotype, cell_diagram_png
from lightning_nas.plots import png_image, predictor_scatter_png
from lightning_nas.spaces import Growth
from lightning_nas.strategies.candidates import ResultsFile


def spearman(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Spearman rank correlation; NaN with fewer than two points."""
    if len(actual) < 2:
        return math.nan
    return float(spearman_corrcoef(torch.tensor(predicted, dtype=torch.float64),
                                   torch.tensor(actual, dtype=torch.float64)))


class SearchProgress:
    """The search's progress (``levels``, one dict per level: b, candidates, how many stopped early, best accuracy and
    cell, and from b=2 the predictor's Spearman correlations), written under ``output_dir`` and logged to ``logger``
    by the rank told to ``write``. ``results`` is the search's results file, every candidate of which W&B gets as a
    table; ``growth`` is the searched space's, whose cells these are."""

    def __init__(self, output_dir: Path, results: ResultsFile, growth: Growth, logger: Logger | None = None) -> None:
        self.output_dir, self.results, self.growth, self.logger = output_dir, results, growth, logger
        self.levels: list[dict[str, Any]] = []

    def start(self, hyperparams: dict[str, Any], write: bool) -> None:
        """Begin a run's record (a resumed run records every level again); log the search's settings."""
        self.levels = []
        if write and self.logger is not None:
            self.logger.log_hyperparams(hyperparams)

    def record(
        self, b: int, beam: list[Any], sample: list[Any], results: dict[Any, dict],
        predicted: dict[str, float], out_of_fold: float | None, write: bool,
    ) -> None:
        """Add level b; with ``write``, rewrite ``progress.json``, plot predicted vs. true accuracy and log. The best
        cell and the correlations count only candidates that ran their full budget."""
        full = [cell for cell in beam if not results[cell].get("stopped_early")]
        key = self.growth.key
        best = max(full or beam, key=lambda c: (results[c]["accuracy"], key(c)))  # all stopped: the best truncated
        level: dict[str, Any] = {"b": b, "candidates": len(beam), "stopped_early": len(beam) - len(full),
                                 "best_accuracy": results[best]["accuracy"], "best_cell": self.growth.to_data(best)}
        points: dict[str, tuple[list[float], list[float]]] = {}
        if predicted:
            for name, cells in (("beam", beam), ("random sample", sample)):
                cells = [c for c in cells if not results[c].get("stopped_early")]
                if cells:
                    points[name] = ([predicted[key(c)] for c in cells], [results[c]["accuracy"] for c in cells])
            level.update(out_of_fold_spearman=out_of_fold, spearman=spearman(*points.get("beam", ([], []))))
            if sample:
                level.update(sample_size=len(sample), sample_spearman=spearman(*points.get("random sample", ([], []))))
            print(f"[PNAS] b={b}: predictor Spearman on the {len(beam)} it chose {level['spearman']:.3f}"
                  + (f", on {len(sample)} random children {level['sample_spearman']:.3f}" if sample else "")
                  + f", out-of-fold on b < {b} {out_of_fold:.3f}", flush=True)
        self.levels.append(level)
        if write:
            write_atomic(self.output_dir / "progress.json", json.dumps(self.levels, indent=1).encode())
            png = None
            if points:
                title = f"b={b}: Spearman {level['spearman']:.3f} on the beam" + (
                    f", {level['sample_spearman']:.3f} on the sample" if sample else "")
                png = predictor_scatter_png(points, title)
                write_atomic(self.output_dir / "plots" / f"predicted_vs_true_b{b}.png", png)
            self.log_level(level, png)

    def log_level(self, level: dict[str, Any], scatter: bytes | None) -> None:
        """The level's numbers to the logger; with W&B also every candidate so far as a table, the best cell's
        diagram and the predictor's scatter."""
        if self.logger is None:
            return
        b = level["b"]
        self.logger.log_metrics({f"pnas/{key}": float(value) for key, value in level.items()
                                 if isinstance(value, (int, float)) and key != "b"}, step=b)
        if isinstance(self.logger, WandbLogger):
            import wandb

            rows = [[r["key"], r["b"], r["accuracy"], r["epochs"], bool(r.get("stopped_early"))]
                    for r in sorted(self.results.read(), key=lambda r: (r["b"], r["key"]))]
            best = self.growth.architecture(self.growth.from_data(level["best_cell"]))
            payload: dict[str, Any] = {
                "candidates": wandb.Table(columns=["cell", "b", "accuracy", "epochs", "stopped early"], data=rows)}
            if isinstance(best, Genotype):
                payload["best_cell"] = wandb.Image(png_image(cell_diagram_png(best)),
                                                   caption=f"b={b}, held-out accuracy {level['best_accuracy']:.4f}")
            if scatter is not None:
                payload["predictor/scatter"] = wandb.Image(png_image(scatter), caption=f"b={b}")
            self.logger.experiment.log({**payload, "b": b})

    def log_genotype(self, path: str) -> None:
        """The final genotype file as a W&B artifact; any logger is then finalized."""
        if self.logger is None:
            return
        if isinstance(self.logger, WandbLogger):
            import wandb

            artifact = wandb.Artifact(f"genotype-{self.logger.experiment.id}", type="genotype")
            artifact.add_file(path)
            self.logger.experiment.log_artifact(artifact)
        self.logger.finalize("success")
