"""PNAS: progressive search over cells of 1..B blocks, guided by an accuracy predictor.

Level b=1 trains every one-block cell and fits the predictor. Each further level expands every cell of the beam by
every possible next block, ranks the children with the predictor, trains the top K as proxy networks and refits the
predictor on all results so far. The best cell of the last level is the answer.

The search is a plain driver object, not a LightningModule: it is not one optimisation but many short, independent
fits (one per candidate, one per predictor refit) with a beam carried between them. Each of those fits is an ordinary
LightningModule (``CandidateModule``, ``AccuracyPredictor``) run by its own Trainer, so callbacks such as
``MedianStopping`` and ``WeightInheritance`` plug in unchanged.

Fault tolerance and parallelism both rest on the results file of a ``CandidatePool`` (``candidates``): a restarted
search skips every finished candidate, and the ranks of a multi-process launch (``ranks``) share each level's
candidates. Rank 0 fits the predictor and publishes the beam, so all ranks agree on it.

Rank 0 also keeps ``progress.json`` (per level: candidates, best cell, the predictor's Spearman correlations) and a
predicted-vs-true accuracy scatter per level under ``plots/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import torch
from matplotlib.figure import Figure
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.callbacks import MedianStopping, WeightInheritance
from lightning_nas.data import NASDataModule
from lightning_nas.data.pnas_results import PredictorDataModule, collate
from lightning_nas.errors import check
from lightning_nas.files import write_atomic
from lightning_nas.genotypes import Genotype
from lightning_nas.ops import OPS, PNAS_OPS
from lightning_nas.spaces.pnas import (
    NUM_CELL_INPUTS,
    PNASCell,
    encode,
    expand_beam,
    one_block_cells,
    shared_edges,
)
from lightning_nas.strategies.candidates import CandidatePool
from lightning_nas.strategies.pnas_predictor import AccuracyPredictor
from lightning_nas.strategies.ranks import Ranks


def scatter_png(predicted: Sequence[float], actual: Sequence[float], title: str) -> bytes:
    """Predicted vs. true accuracy, one point per candidate, with the diagonal where a perfect predictor would lie."""
    figure = Figure(figsize=(4.5, 4.5))
    axis = figure.subplots()
    axis.scatter(actual, predicted, s=12)
    low, high = min(*actual, *predicted), max(*actual, *predicted)
    axis.plot([low, high], [low, high], color="grey", linewidth=0.8)
    axis.set(xlabel="true held-out accuracy", ylabel="predicted accuracy", title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


class PNASSearch:
    """Progressive Neural Architecture Search (Liu et al., 2018) with a results file that makes it resumable.

    ``data`` must be an eval-mode data module with ``val_split`` > 0: candidates train on the train split (at most
    ``limit_train_batches`` batches an epoch, as Lightning reads it) and are scored on the held-out images.
    ``early_termination`` stops candidates of level b >= 2 whose held-out accuracy falls below the median of the
    finished level-(b-1) curves at the same epoch (a fixed reference, so the beam does not depend on which rank finished
    first). ``inherit_weights`` starts each child from its parent's trained weights. Both are off by default, as in the
    paper. ``num_threads`` sets torch's CPU threads per process: tiny proxy networks run faster on one thread per
    rank (parallel across candidates, not within one), and far faster on a shared machine; None keeps torch's default.
    """

    def __init__(
        self,
        data: NASDataModule,
        output_dir: str = "pnas",
        B: int = 5,
        K: int = 256,
        N: int = 2,
        F: int = 24,
        epochs: int = 20,
        lr: float = 0.025,
        limit_train_batches: int | float = 1.0,
        ops: Sequence[str] = PNAS_OPS,
        predictor: Literal["lstm", "mlp"] = "lstm",
        predictor_epochs: int = 50,
        predictor_lr: float = 0.01,
        ensemble_size: int = 5,
        early_termination: bool = False,
        termination_grace_epochs: int = 1,
        inherit_weights: bool = False,
        accelerator: str = "auto",
        num_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        check(B >= 1, f"B (blocks per cell, one level each) must be at least 1, got {B}; the paper searches B=5")
        check(K >= 1, f"K (beam: candidates trained per level) must be at least 1, got {K}; the paper keeps K=256")
        check(N >= 1, f"N (cells per stage of the proxy network) must be at least 1, got {N}; the paper uses N=2")
        check(F >= 1, f"F (channels of the proxy network's first cells) must be at least 1, got {F}; the paper uses 24")
        check(epochs >= 1, f"epochs (per candidate) must be at least 1, got {epochs}; the paper trains each for 20")
        check(predictor_epochs >= 1, f"predictor_epochs must be at least 1, got {predictor_epochs}")
        check(lr > 0 and predictor_lr > 0, f"lr and predictor_lr must be positive, got {lr} and {predictor_lr}")
        check(limit_train_batches > 0, f"limit_train_batches must be positive, got {limit_train_batches}")
        check(len(ops) > 0, f"ops is empty: give the candidate ops, e.g. {list(PNAS_OPS)}")
        unknown = [op for op in ops if op not in OPS]
        check(not unknown, f"unknown ops {unknown} in ops; valid ops are: {', '.join(sorted(OPS))}")
        check(len(set(ops)) == len(ops), f"ops must be distinct, got {list(ops)}")
        level_one = len(one_block_cells(ops))
        check(ensemble_size >= 1 and (B == 1 or ensemble_size <= level_one),
              f"ensemble_size (predictors, one held-out fold each) must be between 1 and the {level_one} one-block "
              f"cells the predictor first learns from, got {ensemble_size}; the paper uses 5")
        check(termination_grace_epochs >= 0, f"termination_grace_epochs must be >= 0, got {termination_grace_epochs}")
        check(num_threads is None or num_threads >= 1, f"num_threads must be at least 1 (or null), got {num_threads}")
        check(data.mode == "eval" and data.val_split > 0,
              f"PNAS scores candidates on held-out images: give the data module mode='eval' and val_split > 0, got "
              f"mode={data.mode!r}, val_split={data.val_split}")
        self.data, self.output_dir = data, Path(output_dir)
        self.B, self.K, self.N, self.F, self.epochs, self.lr = B, K, N, F, epochs, lr
        self.limit_train_batches = limit_train_batches
        self.ops = tuple(ops)
        self.predictor_kind, self.predictor_epochs, self.predictor_lr = predictor, predictor_epochs, predictor_lr
        self.ensemble_size = ensemble_size
        self.early_termination, self.termination_grace_epochs = early_termination, termination_grace_epochs
        self.inherit_weights, self.accelerator, self.seed = inherit_weights, accelerator, seed
        self.num_threads = num_threads
        self.pool = CandidatePool(data, self.output_dir / "results.jsonl", N, F, epochs, lr, limit_train_batches,
                                  accelerator, seed, label="PNAS")
        self.results = self.pool.results
        self.beams: dict[int, list[PNASCell]] = {}
        self.progress: list[dict[str, Any]] = []
        """Per level: b, candidates, best accuracy and cell, and from b=2 the predictor's Spearman correlations."""

    @property
    def rank(self) -> int:
        return self.pool.ranks.rank

    # ----------------------------------------------------------------------------------------------- candidates
    def weights_path(self, cell: PNASCell) -> Path:
        return self.output_dir / "weights" / f"{hashlib.sha1(cell.key().encode()).hexdigest()[:16]}.pt"

    def inheritance_mapping(self, parent: PNASCell, child: PNASCell) -> dict[str, str | None]:
        """Child op modules → the parent's op computing the same edge; the new block's ops start fresh."""
        edges = shared_edges(parent, child)
        return {
            f"network.cells.{i}.ops.{e}": (f"network.cells.{i}.ops.{edges[e]}" if e in edges else None)
            for i in range(3 * self.N)
            for e in range(2 * len(child))
        }

    def train_candidate(self, cell: PNASCell, b: int, parent: PNASCell | None, reference: list[list[float]]) -> dict:
        """Train one proxy network and return its result record (without writing it)."""
        callbacks: list[pl.Callback] = []
        stopping = None
        if self.early_termination and reference:
            stopping = MedianStopping("val/top1", curves=reference, grace_epochs=self.termination_grace_epochs,
                                      record=False)
            callbacks.append(stopping)
        if self.inherit_weights and parent is not None:
            callbacks.append(WeightInheritance(self.weights_path(parent), self.inheritance_mapping(parent, cell)))
        module, record = self.pool.train(cell.key(), cell.to_genotype(), callbacks)
        if self.inherit_weights:
            buffer = io.BytesIO()
            torch.save(module.state_dict(), buffer)
            write_atomic(self.weights_path(cell), buffer.getvalue())
        return {**record, "b": b, "cell": cell.to_list(), "stopped_epoch": stopping.stopped_epoch if stopping else None}

    def train_level(
        self, b: int, candidates: list[PNASCell], parents: dict[PNASCell, PNASCell]
    ) -> dict[PNASCell, dict]:
        """Train this rank's share of the level's unfinished candidates; return every candidate's result."""
        reference = [r["curve"] for r in self.finished().values() if r["b"] == b - 1 and r["stopped_epoch"] is None]
        by_key = {cell.key(): cell for cell in candidates}
        results = self.pool.train_all(
            f"b={b}", list(by_key), lambda key: self.train_candidate(by_key[key], b, parents.get(by_key[key]), reference)
        )
        return {cell: results[key] for key, cell in by_key.items()}

    def finished(self) -> dict[PNASCell, dict]:
        return {PNASCell.from_list(r["cell"]): r for r in self.results.read()}

    # ------------------------------------------------------------------------------------------------ predictor
    def fit_predictor(self, b: int) -> tuple[AccuracyPredictor, float]:
        """Fit the ensemble that ranks level b: on the results of levels 1..b-1 (a resumed search may hold some of
        level b already), in a fixed order, so the fit does not depend on which rank wrote first; return it with its
        out-of-fold Spearman correlation."""
        records = [r for r in self.results.read() if r["b"] < b]
        records.sort(key=lambda r: (r["b"], PNASCell.from_list(r["cell"]).key()))
        pl.seed_everything(self.seed, verbose=False)
        data = PredictorDataModule(records, lambda cell: encode(PNASCell.from_list(cell), self.ops),
                                   num_folds=self.ensemble_size, seed=self.seed)
        predictor = AccuracyPredictor(NUM_CELL_INPUTS + self.B - 1, len(self.ops), self.predictor_kind,
                                      ensemble_size=self.ensemble_size, lr=self.predictor_lr)
        trainer = self.pool.trainer(self.predictor_epochs, [], check_val_every_n_epoch=self.predictor_epochs)
        trainer.fit(predictor, data)
        return predictor.cpu().eval(), float(trainer.callback_metrics["val/spearman"])

    def predict(self, predictor: AccuracyPredictor, cells: list[PNASCell], batch_size: int = 4096) -> list[float]:
        predictions = []
        with torch.no_grad():
            for start in range(0, len(cells), batch_size):
                batch = collate([(encode(c, self.ops), 0.0, 0) for c in cells[start : start + batch_size]])
                predictions += predictor(batch["tokens"], batch["lengths"]).tolist()
        return predictions

    def next_beam(
        self, b: int, beam: list[PNASCell]
    ) -> tuple[list[PNASCell], dict[PNASCell, PNASCell], list[float], float]:
        """Rank 0 refits the predictor, expands the beam and keeps the K children it ranks highest; every rank
        receives them with their parents, predicted accuracies and the predictor's out-of-fold Spearman."""
        payload = None
        if self.rank == 0:
            predictor, correlation = self.fit_predictor(b)
            print(f"[PNAS] b={b}: predictor refit on the results of b < {b}, out-of-fold Spearman {correlation:.3f}",
                  flush=True)
            parents = expand_beam(beam, self.ops)
            children = list(parents)
            scores = self.predict(predictor, children)
            top = sorted(range(len(children)), key=lambda i: -scores[i])[: self.K]
            payload = {"children": [children[i].to_list() for i in top],
                       "parents": [parents[children[i]].to_list() for i in top],
                       "predicted": [scores[i] for i in top], "out_of_fold_spearman": correlation}
        payload = self.pool.ranks.from_rank_zero(f"beam{b}", payload)
        children = [PNASCell.from_list(cell) for cell in payload["children"]]
        parents = {child: PNASCell.from_list(parent) for child, parent in zip(children, payload["parents"])}
        return children, parents, payload["predicted"], payload["out_of_fold_spearman"]

    # --------------------------------------------------------------------------------------------------- search
    @property
    def correlations(self) -> dict[int, float]:
        """The predictor's Spearman correlation on each new level b >= 2 (predicted before training vs. true)."""
        return {level["b"]: level["spearman"] for level in self.progress if "spearman" in level}

    def record_level(
        self, b: int, results: dict[PNASCell, dict], predicted: list[float], out_of_fold: float | None
    ) -> None:
        """Add level b to the progress; rank 0 rewrites ``progress.json`` and plots predicted vs. true accuracy."""
        best = max(results, key=lambda c: (results[c]["accuracy"], c.key()))
        level: dict[str, Any] = {"b": b, "candidates": len(results), "best_accuracy": results[best]["accuracy"],
                                 "best_cell": best.to_list()}
        if predicted:
            actual = [results[c]["accuracy"] for c in results]
            correlation = math.nan
            if len(actual) > 1:
                correlation = float(spearman_corrcoef(torch.tensor(predicted), torch.tensor(actual)))
            level.update(out_of_fold_spearman=out_of_fold, spearman=correlation)
            print(f"[PNAS] b={b}: predictor Spearman on this new level {correlation:.3f}", flush=True)
            if self.rank == 0:
                png = scatter_png(predicted, actual, f"b={b}: {len(actual)} candidates, Spearman {correlation:.3f}")
                write_atomic(self.output_dir / "plots" / f"predicted_vs_true_b{b}.png", png)
        self.progress.append(level)
        if self.rank == 0:
            write_atomic(self.output_dir / "progress.json", json.dumps(self.progress, indent=1).encode())

    def run(self) -> Genotype:
        """Run (or resume) the search; write and return the best cell of the last level as a Genotype."""
        self.pool.ranks = Ranks.launch("pnas")
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.progress = []
        candidates, parents, predicted, out_of_fold = one_block_cells(self.ops), {}, [], None
        for b in range(1, self.B + 1):
            if b > 1:
                candidates, parents, predicted, out_of_fold = self.next_beam(b, self.beams[b - 1])
            print(f"[PNAS] b={b}: training {len(candidates)} candidates", flush=True)
            results = self.train_level(b, candidates, parents)
            self.beams[b] = candidates
            self.record_level(b, results, predicted, out_of_fold)
        best = PNASCell.from_list(self.progress[-1]["best_cell"])
        genotype = best.to_genotype()
        if self.rank == 0:
            path = genotype.save(self.output_dir / "genotype.json")
            print(f"[PNAS] best cell (held-out accuracy {self.progress[-1]['best_accuracy']:.4f}):\n{genotype}\n"
                  f"written to {path}", flush=True)
        return genotype
