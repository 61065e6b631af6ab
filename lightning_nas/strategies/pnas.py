"""PNAS: progressive search over cells of 1..B blocks, guided by an accuracy predictor.

Level b=1 trains every one-block cell and fits the predictor. Each further level expands every cell of the beam by
every possible next block, ranks the children with the predictor, trains the top K as proxy networks and refits the
predictor on all results so far. The best cell of the last level is the answer.

The search is a plain driver object, not a LightningModule: it is not one optimisation but many short, independent
fits (one per candidate, one per predictor refit) with a beam carried between them. Each of those fits is an ordinary
LightningModule (``CandidateModule``, ``AccuracyPredictor``) run by its own Trainer, so callbacks such as
``MedianStopping`` and ``WeightInheritance`` plug in unchanged.

Fault tolerance and parallelism both rest on the results file: every finished candidate is appended atomically, a
restarted search skips what the file holds, and under a multi-process launch (``torchrun``, or any launcher that sets
RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) rank r trains candidates i with i % world_size == r; after a barrier
every rank reads all the results from the file. Rank 0 fits the predictor and publishes the beam, so all ranks agree
on it. The ranks meet through the launcher's key-value store, not a process group: every candidate Trainer, data
module and metric then sees a single process, so each rank trains whole candidates on all the data (results do not
depend on the number of ranks) and no collective call can wait for a rank that is busy elsewhere.

Rank 0 also keeps ``progress.json`` (per level: candidates, best cell, the predictor's Spearman correlations) and a
predicted-vs-true accuracy scatter per level under ``plots/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from matplotlib.figure import Figure
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.callbacks import MedianStopping, WeightInheritance
from lightning_nas.data import NASDataModule
from lightning_nas.data.pnas_results import PredictorDataModule, ResultsFile, collate
from lightning_nas.files import write_atomic
from lightning_nas.genotypes import Genotype
from lightning_nas.networks import NetworkCIFAR
from lightning_nas.ops import PNAS_OPS
from lightning_nas.spaces.pnas import (
    NUM_CELL_INPUTS,
    PNASCell,
    encode,
    expand_beam,
    one_block_cells,
    shared_edges,
)
from lightning_nas.strategies.pnas_predictor import AccuracyPredictor


class CandidateModule(pl.LightningModule):
    """A candidate cell stacked into the proxy network: 3N cells of F channels (two of them stride-2 reductions),
    trained with SGD and cosine decay; ``curve`` holds the validation accuracy after each epoch."""

    def __init__(
        self,
        cell: list[list],
        num_classes: int,
        in_chans: int,
        N: int = 2,
        F: int = 24,
        epochs: int = 20,
        lr: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        genotype = PNASCell.from_list(cell).to_genotype()
        self.network = NetworkCIFAR(genotype, C=F, layers=3 * N, num_classes=num_classes, in_chans=in_chans,
                                    auxiliary=False)
        self.curve: list[float] = []
        self._correct = self._seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.network(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._correct += int((self.network(x).argmax(1) == y).sum())
        self._seen += len(y)

    def on_validation_epoch_end(self) -> None:
        accuracy = self._correct / max(self._seen, 1)
        self._correct = self._seen = 0
        self.log("val/top1", accuracy)
        if not self.trainer.sanity_checking:
            self.curve.append(accuracy)

    def configure_optimizers(self) -> Any:
        h = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=h.epochs)]


STORE_TIMEOUT = timedelta(days=30)
"""How long a rank waits for the others at a level's end: as long as a level of candidates may take."""


def _launch() -> tuple[dist.Store | None, int, int]:
    """(key-value store, rank, world size) of a multi-process launch, or (None, 0, 1) for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None, 0, 1
    store, rank, world_size = next(dist.rendezvous("env://", timeout=STORE_TIMEOUT))
    return dist.PrefixStore("pnas", store), rank, world_size


def _seed(seed: int, cell: PNASCell) -> int:
    return (seed + int(hashlib.sha1(cell.key().encode()).hexdigest()[:8], 16)) % 2**31


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
        if data.mode != "eval" or not data.val_split:
            raise ValueError(
                "PNAS scores candidates on held-out images: give the data module mode='eval' and val_split > 0"
            )
        self.data, self.output_dir = data, Path(output_dir)
        self.B, self.K, self.N, self.F, self.epochs, self.lr = B, K, N, F, epochs, lr
        self.limit_train_batches = limit_train_batches
        self.ops = tuple(ops)
        self.predictor_kind, self.predictor_epochs, self.predictor_lr = predictor, predictor_epochs, predictor_lr
        self.ensemble_size = ensemble_size
        self.early_termination, self.termination_grace_epochs = early_termination, termination_grace_epochs
        self.inherit_weights, self.accelerator, self.seed = inherit_weights, accelerator, seed
        self.num_threads = num_threads
        self.results = ResultsFile(self.output_dir / "results.jsonl")
        self.beams: dict[int, list[PNASCell]] = {}
        self.progress: list[dict[str, Any]] = []
        """Per level: b, candidates, best accuracy and cell, and from b=2 the predictor's Spearman correlations."""
        self.store, self.rank, self.world_size = None, 0, 1

    # ----------------------------------------------------------------------------------------------- candidates
    def _trainer(self, max_epochs: int, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
        """A single-device Trainer; under a multi-process launch on GPUs, rank r's candidates use GPU LOCAL_RANK."""
        gpu = self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())
        devices = [int(os.environ.get("LOCAL_RANK", "0"))] if gpu else 1
        return pl.Trainer(max_epochs=max_epochs, accelerator=self.accelerator, devices=devices, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          num_sanity_val_steps=0, callbacks=callbacks, **kwargs)

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
        pl.seed_everything(_seed(self.seed, cell), verbose=False)
        module = CandidateModule(cell.to_list(), self.data.num_classes, self.data.in_chans, self.N, self.F,
                                 self.epochs, self.lr)
        callbacks: list[pl.Callback] = []
        stopping = None
        if self.early_termination and reference:
            stopping = MedianStopping("val/top1", curves=reference, grace_epochs=self.termination_grace_epochs,
                                      record=False)
            callbacks.append(stopping)
        if self.inherit_weights and parent is not None:
            callbacks.append(WeightInheritance(self.weights_path(parent), self.inheritance_mapping(parent, cell)))
        start = time.perf_counter()
        trainer = self._trainer(self.epochs, callbacks, limit_train_batches=self.limit_train_batches)
        trainer.fit(module, datamodule=self.data)
        if self.inherit_weights:
            buffer = io.BytesIO()
            torch.save(module.state_dict(), buffer)
            write_atomic(self.weights_path(cell), buffer.getvalue())
        return {
            "b": b, "cell": cell.to_list(), "accuracy": module.curve[-1], "curve": module.curve,
            "epochs": len(module.curve), "seconds": round(time.perf_counter() - start, 3),
            "stopped_epoch": stopping.stopped_epoch if stopping else None,
        }

    def train_level(
        self, b: int, candidates: list[PNASCell], parents: dict[PNASCell, PNASCell]
    ) -> dict[PNASCell, dict]:
        """Train this rank's share of the level's unfinished candidates; return every candidate's result."""
        finished = self.finished()
        reference = [r["curve"] for c, r in finished.items() if r["b"] == b - 1 and r["stopped_epoch"] is None]
        mine = [c for i, c in enumerate(candidates) if i % self.world_size == self.rank and c not in finished]
        for cell in mine:
            record = self.train_candidate(cell, b, parents.get(cell), reference)
            self.results.append(record)
            finished = self.finished()  # all ranks' results so far
            done = sum(c in finished for c in candidates)
            best = max(finished[c]["accuracy"] for c in candidates if c in finished)
            stopped = f", stopped at epoch {record['stopped_epoch']}" if record["stopped_epoch"] else ""
            print(f"[PNAS rank {self.rank}] b={b}: {done}/{len(candidates)} candidates done, "
                  f"accuracy {record['accuracy']:.4f}{stopped}, best so far {best:.4f}", flush=True)
        self._barrier(f"level{b}")
        finished = self.finished()
        missing = [c.key() for c in candidates if c not in finished]
        if missing:
            raise RuntimeError(f"level b={b}: no result for {len(missing)} candidates, e.g. {missing[0]}")
        return {c: finished[c] for c in candidates}

    def finished(self) -> dict[PNASCell, dict]:
        return {PNASCell.from_list(r["cell"]): r for r in self.results.read()}

    # ------------------------------------------------------------------------------------------------ ranks
    def _barrier(self, name: str) -> None:
        """Wait until every rank has reached ``name`` (a no-op for a single process)."""
        if self.store is not None:
            self.store.set(f"{name}/{self.rank}", "arrived")
            self.store.wait([f"{name}/{rank}" for rank in range(self.world_size)])

    def _from_rank_zero(self, name: str, payload: Any) -> Any:
        """Rank 0's (JSON) ``payload`` on every rank; the other ranks pass None and wait for it."""
        if self.store is None:
            return payload
        if self.rank == 0:
            self.store.set(name, json.dumps(payload))
            return payload
        return json.loads(self.store.get(name))

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
        trainer = self._trainer(self.predictor_epochs, [], check_val_every_n_epoch=self.predictor_epochs)
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
        payload = self._from_rank_zero(f"beam{b}", payload)
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
        self.store, self.rank, self.world_size = _launch()
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
