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
RANK and WORLD_SIZE) rank r trains candidates i with i % world_size == r; after a barrier every rank reads all the
results from the file. Rank 0 fits the predictor and broadcasts the beam, so all ranks agree on it.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.callbacks import MedianStopping, WeightInheritance
from lightning_nas.data import NASDataModule
from lightning_nas.data.pnas_results import PredictorDataModule, ResultsFile, collate
from lightning_nas.genotypes import Genotype
from lightning_nas.networks import NetworkCIFAR
from lightning_nas.ops import PNAS_OPS
from lightning_nas.spaces.pnas import NUM_CELL_INPUTS, PNASCell, encode, expand_beam, one_block_cells, shared_edges
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
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._correct += int((self.network(x).argmax(1) == y).sum())
        self._seen += len(y)

    def on_validation_epoch_end(self) -> None:
        accuracy = self._correct / max(self._seen, 1)
        self._correct = self._seen = 0
        self.log("val_acc", accuracy)
        if not self.trainer.sanity_checking:
            self.curve.append(accuracy)

    def configure_optimizers(self) -> Any:
        h = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=h.epochs)]


def _world() -> tuple[int, int]:
    """(rank, world size) of a multi-process launch; joins the process group (gloo) on first use."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _seed(seed: int, cell: PNASCell) -> int:
    return (seed + int(hashlib.sha1(cell.key().encode()).hexdigest()[:8], 16)) % 2**31


class PNASSearch:
    """Progressive Neural Architecture Search (Liu et al., 2018) with a results file that makes it resumable.

    ``data`` must be an eval-mode data module with ``val_split`` > 0: candidates train on the train split and are
    scored on the held-out images. ``early_termination`` stops candidates of level b >= 2 whose held-out accuracy falls
    below the median of the finished level-(b-1) curves at the same epoch (a fixed reference, so the beam does not
    depend on which rank finished first). ``inherit_weights`` starts each child from its parent's trained weights.
    Both are off by default, as in the paper.
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
        ops: Sequence[str] = PNAS_OPS,
        predictor: Literal["lstm", "mlp"] = "lstm",
        predictor_epochs: int = 50,
        predictor_lr: float = 0.01,
        ensemble_size: int = 5,
        early_termination: bool = False,
        termination_grace_epochs: int = 1,
        inherit_weights: bool = False,
        accelerator: str = "auto",
        seed: int = 0,
    ) -> None:
        if data.mode != "eval" or not data.val_split:
            raise ValueError("PNAS scores candidates on held-out images: give the data module mode='eval' and val_split > 0")
        self.data, self.output_dir = data, Path(output_dir)
        self.B, self.K, self.N, self.F, self.epochs, self.lr = B, K, N, F, epochs, lr
        self.ops = tuple(ops)
        self.predictor_kind, self.predictor_epochs, self.predictor_lr = predictor, predictor_epochs, predictor_lr
        self.ensemble_size = ensemble_size
        self.early_termination, self.termination_grace_epochs = early_termination, termination_grace_epochs
        self.inherit_weights, self.accelerator, self.seed = inherit_weights, accelerator, seed
        self.results = ResultsFile(self.output_dir / "results.jsonl")
        self.beams: dict[int, list[PNASCell]] = {}
        self.correlations: dict[int, float] = {}

    # ----------------------------------------------------------------------------------------------- candidates
    def _trainer(self, max_epochs: int, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
        return pl.Trainer(max_epochs=max_epochs, accelerator=self.accelerator, devices=1, logger=False,
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
            stopping = MedianStopping("val_acc", curves=reference, grace_epochs=self.termination_grace_epochs,
                                      record=False)
            callbacks.append(stopping)
        if self.inherit_weights and parent is not None:
            callbacks.append(WeightInheritance(self.weights_path(parent), self.inheritance_mapping(parent, cell)))
        start = time.perf_counter()
        self._trainer(self.epochs, callbacks).fit(module, datamodule=self.data)
        if self.inherit_weights:
            path = self.weights_path(cell)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(module.state_dict(), path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        return {
            "b": b, "cell": cell.to_list(), "accuracy": module.curve[-1], "curve": module.curve,
            "epochs": len(module.curve), "seconds": round(time.perf_counter() - start, 3),
            "stopped_epoch": stopping.stopped_epoch if stopping else None,
        }

    def train_level(self, b: int, candidates: list[PNASCell], parents: dict[PNASCell, PNASCell]) -> dict[PNASCell, dict]:
        """Train this rank's share of the level's unfinished candidates; return every candidate's result."""
        rank, world_size = _world()
        finished = self.finished()
        reference = [r["curve"] for c, r in finished.items() if r["b"] == b - 1 and r["stopped_epoch"] is None]
        mine = [c for i, c in enumerate(candidates) if i % world_size == rank and c not in finished]
        done = len(candidates) - sum(c not in finished for c in candidates)
        for cell in mine:
            record = self.train_candidate(cell, b, parents.get(cell), reference)
            self.results.append(record)
            done += 1
            best = max([r["accuracy"] for c, r in self.finished().items() if r["b"] == b], default=0.0)
            stopped = f", stopped at epoch {record['stopped_epoch']}" if record["stopped_epoch"] else ""
            print(f"[PNAS rank {rank}] b={b}: {done}/{len(candidates)} candidates done, "
                  f"accuracy {record['accuracy']:.4f}{stopped}, best so far {best:.4f}", flush=True)
        if world_size > 1:
            dist.barrier()
        finished = self.finished()
        missing = [c.key() for c in candidates if c not in finished]
        if missing:
            raise RuntimeError(f"level b={b}: no result for {len(missing)} candidates, e.g. {missing[0]}")
        return {c: finished[c] for c in candidates}

    def finished(self) -> dict[PNASCell, dict]:
        return {PNASCell.from_list(r["cell"]): r for r in self.results.read()}

    # ------------------------------------------------------------------------------------------------ predictor
    def fit_predictor(self) -> tuple[AccuracyPredictor, float]:
        """Fit the ensemble on every result so far (in a fixed order, so the fit does not depend on which rank wrote
        first); return it with its out-of-fold Spearman correlation."""
        records = sorted(self.results.read(), key=lambda r: (r["b"], PNASCell.from_list(r["cell"]).key()))
        pl.seed_everything(self.seed, verbose=False)
        data = PredictorDataModule(records, lambda cell: encode(PNASCell.from_list(cell), self.ops),
                                   num_folds=self.ensemble_size, seed=self.seed)
        predictor = AccuracyPredictor(NUM_CELL_INPUTS + self.B - 1, len(self.ops), self.predictor_kind,
                                      ensemble_size=self.ensemble_size, lr=self.predictor_lr)
        trainer = self._trainer(self.predictor_epochs, [], check_val_every_n_epoch=self.predictor_epochs)
        trainer.fit(predictor, data)
        return predictor.cpu().eval(), float(trainer.callback_metrics["val_spearman"])

    def predict(self, predictor: AccuracyPredictor, cells: list[PNASCell], batch_size: int = 4096) -> list[float]:
        predictions = []
        with torch.no_grad():
            for start in range(0, len(cells), batch_size):
                batch = collate([(encode(c, self.ops), 0.0, 0) for c in cells[start : start + batch_size]])
                predictions += predictor(batch["tokens"], batch["lengths"]).tolist()
        return predictions

    def next_beam(self, beam: list[PNASCell]) -> tuple[list[PNASCell], dict[PNASCell, PNASCell], list[float]]:
        """Rank 0 expands the beam and keeps the K children the predictor ranks highest; all ranks receive them."""
        rank, world_size = _world()
        payload: list[Any] = [None]
        if rank == 0:
            predictor, correlation = self.fit_predictor()
            print(f"[PNAS] predictor refit on {len(self.results.read())} results: out-of-fold Spearman "
                  f"{correlation:.3f}", flush=True)
            parents = expand_beam(beam, self.ops)
            children = list(parents)
            scores = self.predict(predictor, children)
            top = sorted(range(len(children)), key=lambda i: -scores[i])[: self.K]
            payload = [([children[i] for i in top], {children[i]: parents[children[i]] for i in top},
                        [scores[i] for i in top])]
        if world_size > 1:
            dist.broadcast_object_list(payload, src=0)
        return payload[0]

    # --------------------------------------------------------------------------------------------------- search
    def run(self) -> Genotype:
        """Run (or resume) the search; write and return the best cell of the last level as a Genotype."""
        candidates, parents, predicted = one_block_cells(self.ops), {}, []
        for b in range(1, self.B + 1):
            if b > 1:
                candidates, parents, predicted = self.next_beam(self.beams[b - 1])
            print(f"[PNAS] b={b}: training {len(candidates)} candidates", flush=True)
            results = self.train_level(b, candidates, parents)
            self.beams[b] = candidates
            if predicted:
                actual = torch.tensor([results[c]["accuracy"] for c in candidates])
                correlation = float(spearman_corrcoef(torch.tensor(predicted), actual)) if len(candidates) > 1 else math.nan
                self.correlations[b] = correlation
                print(f"[PNAS] b={b}: predictor Spearman on this new level {correlation:.3f}", flush=True)
        final = self.beams[self.B]
        best = max(final, key=lambda c: (self.finished()[c]["accuracy"], c.key()))
        genotype = best.to_genotype()
        if _world()[0] == 0:
            path = genotype.save(self.output_dir / "genotype.json")
            print(f"[PNAS] best cell (held-out accuracy {self.finished()[best]['accuracy']:.4f}):\n{genotype}\n"
                  f"written to {path}", flush=True)
        return genotype
