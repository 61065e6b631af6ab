"""PNAS: progressive search over cells of 1..B blocks, guided by an accuracy predictor.

Level b=1 trains every one-block cell and fits the predictor. Each further level expands every cell of the beam by
every possible next block, ranks the children with the predictor, trains the top K as proxy networks and updates the
predictor (Algorithm 1): the ensemble is fine-tuned on the new level's results, as in the paper, or refit from scratch
on all results so far. The best cell of the last level is the answer. Early-terminated candidates train neither the
predictor nor count as the best cell: their accuracy is that of a truncated run.

The search is a plain driver object, not a LightningModule: it is not one optimisation but many short, independent
fits (one per candidate, one per predictor refit) with a beam carried between them. Each of those fits is an ordinary
LightningModule (``CandidateModule``, ``AccuracyPredictor``) run by its own Trainer, so callbacks such as
``MedianStopping`` and ``WeightInheritance`` plug in unchanged.

Fault tolerance and parallelism both rest on the results file of a ``CandidatePool`` (``candidates``): a restarted
search skips every finished candidate, and the ranks of a multi-process launch (``ranks``) share each level's
candidates. Rank 0 fits the predictor and publishes the beam, so all ranks agree on it.

The ensemble after each level is saved under ``predictor/``, and re-derived level by level from the results file
when missing, so a restarted search ranks the next level exactly as the uninterrupted one would.

Rank 0 also keeps ``progress.json`` (per level: candidates, best cell, the predictor's Spearman correlations: on the
beam it chose, on a random sample of the whole expansion, and out-of-fold) and a predicted-vs-true accuracy scatter
per level under ``plots/``; with a ``logger`` it logs them too (W&B: a candidates table, the best cell's diagram, the
scatters and the genotype artifact, one run per search).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import random
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.callbacks import MedianStopping, WeightInheritance
from lightning_nas.data import NASDataModule
from lightning_nas.data.predictor import PredictorDataModule, collate
from lightning_nas.errors import check
from lightning_nas.files import write_atomic
from lightning_nas.genotypes import Genotype, cell_diagram_png
from lightning_nas.ops import OPS, PNAS_OPS
from lightning_nas.plots import png_image, predictor_scatter_png
from lightning_nas.spaces.pnas import (
    NUM_CELL_INPUTS,
    PNASCell,
    encode,
    expand_beam,
    one_block_cells,
    shared_edges,
)
from lightning_nas.strategies.candidates import CandidatePool, LRInterval
from lightning_nas.strategies.pnas_predictor import AccuracyPredictor
from lightning_nas.strategies.ranks import Ranks


def spearman(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Spearman rank correlation; NaN with fewer than two points."""
    if len(actual) < 2:
        return math.nan
    return float(spearman_corrcoef(torch.tensor(predicted, dtype=torch.float64),
                                   torch.tensor(actual, dtype=torch.float64)))


class PNASSearch:
    """Progressive Neural Architecture Search (Liu et al., 2018) with a results file that makes it resumable.

    ``data`` must be an eval-mode data module with ``val_split`` > 0: candidates train on the train split (at most
    ``limit_train_batches`` batches an epoch, as Lightning reads it, with ``lr`` cosine-decayed per ``lr_interval``)
    and are scored on the held-out images.
    ``early_termination`` stops candidates of level b >= 2 whose held-out accuracy falls below the median of the
    finished level-(b-1) curves at the same epoch (a fixed reference, so the beam does not depend on which rank finished
    first). ``inherit_weights`` starts each child from its parent's trained weights. Both are off by default, as in the
    paper. ``num_threads`` sets torch's CPU threads per process: tiny proxy networks run faster on one thread per
    rank (parallel across candidates, not within one), and far faster on a shared machine; None keeps torch's default.

    ``predictor_update`` is Algorithm 1's update-predictor: "finetune" (the paper) trains the previous ensemble
    ``predictor_epochs`` more on the new level's results, "refit" trains a fresh one on all results.
    ``correlation_sample`` trains that many extra children drawn uniformly from each level's expansion, to measure
    the predictor on the whole expansion and not only on the K it chose (they join neither the beam nor the
    predictor's data). ``logger`` (a Lightning logger, e.g. ``WandbLogger``) receives rank 0's per-level numbers.
    ``rank_timeout`` is how many seconds a rank of a multi-process search may stay silent before the others end the
    search with an error.
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
        lr_interval: LRInterval = "epoch",
        limit_train_batches: int | float = 1.0,
        ops: Sequence[str] = PNAS_OPS,
        predictor: Literal["lstm", "mlp"] = "lstm",
        predictor_epochs: int = 50,
        predictor_lr: float = 0.01,
        ensemble_size: int = 5,
        predictor_update: Literal["finetune", "refit"] = "finetune",
        correlation_sample: int = 0,
        early_termination: bool = False,
        termination_grace_epochs: int = 1,
        inherit_weights: bool = False,
        accelerator: str = "auto",
        num_threads: int | None = None,
        logger: Logger | None = None,
        rank_timeout: float = 600.0,
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
        check(predictor in ("lstm", "mlp"), f"predictor must be 'lstm' or 'mlp', got {predictor!r}")
        check(predictor_update in ("finetune", "refit"),
              f"predictor_update must be 'finetune' (the paper) or 'refit', got {predictor_update!r}")
        check(correlation_sample >= 0, f"correlation_sample (extra random children per level) must be >= 0, got "
                                       f"{correlation_sample}")
        check(rank_timeout > 0, f"rank_timeout (seconds) must be positive, got {rank_timeout}")
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
        self.ensemble_size, self.predictor_update = ensemble_size, predictor_update
        self.correlation_sample = correlation_sample
        self.early_termination, self.termination_grace_epochs = early_termination, termination_grace_epochs
        self.inherit_weights, self.accelerator, self.seed = inherit_weights, accelerator, seed
        self.num_threads, self.logger, self.rank_timeout = num_threads, logger, rank_timeout
        settings = {"ops": list(self.ops), "early_termination": early_termination,
                    "termination_grace_epochs": termination_grace_epochs, "inherit_weights": inherit_weights}
        self.pool = CandidatePool(data, self.output_dir / "results.jsonl", N, F, epochs, lr, limit_train_batches,
                                  accelerator, seed, label="PNAS", lr_interval=lr_interval, settings=settings)
        self.results = self.pool.results
        self.beams: dict[int, list[PNASCell]] = {}
        self.predictors: dict[int, tuple[AccuracyPredictor, float]] = {}
        """Per level b: the ensemble that has learned levels 1..b, and its out-of-fold Spearman correlation."""
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
        stopped_epoch = stopping.stopped_epoch if stopping else None
        return {**record, "b": b, "cell": cell.to_list(), "stopped_epoch": stopped_epoch,
                "stopped_early": stopped_epoch is not None}

    def train_level(
        self, b: int, candidates: list[PNASCell], parents: dict[PNASCell, PNASCell]
    ) -> dict[PNASCell, dict]:
        """Train the level's unfinished candidates (each rank claiming the next); return every candidate's result."""
        reference = [r["curve"] for r in self.finished().values() if r["b"] == b - 1 and not r.get("stopped_early")]
        by_key = {cell.key(): cell for cell in candidates}
        results = self.pool.train_all(
            f"b={b}", list(by_key),
            lambda key: self.train_candidate(by_key[key], b, parents.get(by_key[key]), reference),
        )
        return {cell: results[key] for key, cell in by_key.items()}

    def finished(self) -> dict[PNASCell, dict]:
        return {PNASCell.from_list(r["cell"]): r for r in self.results.read()}

    # ------------------------------------------------------------------------------------------------ predictor
    def predictor_records(self, b: int) -> list[dict]:
        """What the predictor learns from after level b: the beams' results of levels 1..b in a fixed order (not
        the order ranks wrote them), without early-terminated runs and without the correlation samples."""
        finished = self.finished()
        records = [finished[cell] for level in range(1, b + 1) for cell in self.beams[level]]
        return sorted((r for r in records if not r.get("stopped_early")),
                      key=lambda r: (r["b"], PNASCell.from_list(r["cell"]).key()))

    def predictor_after(self, b: int) -> tuple[AccuracyPredictor, float]:
        """The ensemble that has learned levels 1..b and its out-of-fold Spearman correlation on their results.

        "finetune" trains a copy of the level b-1 ensemble on level b's results, "refit" a fresh one on all of them;
        either way seeded by (seed, b). Each ensemble is kept in memory and saved under ``predictor/`` (with the
        settings it depends on); a restarted search loads it, or re-derives it level by level, to the same weights."""
        if b in self.predictors:
            return self.predictors[b]
        settings = {"kind": self.predictor_kind, "epochs": self.predictor_epochs, "lr": self.predictor_lr,
                    "ensemble_size": self.ensemble_size, "update": self.predictor_update, "seed": self.seed,
                    "ops": list(self.ops), "B": self.B}
        path = self.output_dir / "predictor" / f"b{b}.pt"
        predictor = self.new_predictor(self.seed + b)
        saved = torch.load(path, weights_only=True) if path.is_file() else None
        if saved is not None and json.loads(saved["settings"]) == settings:
            predictor.load_state_dict(saved["state_dict"])
            correlation = float(saved["spearman"])
        else:
            finetune = self.predictor_update == "finetune" and b > 1
            if finetune:
                predictor = copy.deepcopy(self.predictor_after(b - 1)[0]).train()
                pl.seed_everything(self.seed + b, verbose=False)  # as if level b - 1 had been loaded from its file
            correlation = self.fit_predictor(predictor, self.predictor_records(b), {b} if finetune else None)
            if self.rank == 0:
                buffer = io.BytesIO()
                torch.save({"settings": json.dumps(settings), "state_dict": predictor.state_dict(),
                            "spearman": correlation}, buffer)
                write_atomic(path, buffer.getvalue())
        self.predictors[b] = predictor.eval(), correlation
        return self.predictors[b]

    def new_predictor(self, seed: int) -> AccuracyPredictor:
        """A fresh ensemble with the search's predictor settings, its weights drawn under ``seed``."""
        pl.seed_everything(seed, verbose=False)
        return AccuracyPredictor(NUM_CELL_INPUTS + self.B - 1, len(self.ops), self.predictor_kind,
                                 ensemble_size=self.ensemble_size, lr=self.predictor_lr)

    def fit_predictor(self, predictor: AccuracyPredictor, records: list[dict],
                      train_levels: set[int] | None = None) -> float:
        """Train ``predictor`` for ``predictor_epochs`` on result records (only those of ``train_levels`` when given)
        and leave it on the CPU in eval mode; return its out-of-fold Spearman correlation on all ``records``."""
        data = PredictorDataModule(records, self.encode_list, self.ensemble_size, seed=self.seed,
                                   train_levels=train_levels)
        trainer = self.pool.trainer(self.predictor_epochs, [], check_val_every_n_epoch=self.predictor_epochs)
        trainer.fit(predictor, data)
        predictor.cpu().eval()
        return float(trainer.callback_metrics["val/spearman"])

    def encode_list(self, cell: list) -> list[int]:
        return encode(PNASCell.from_list(cell), self.ops)

    def predict(self, predictor: AccuracyPredictor, cells: list[PNASCell], batch_size: int = 4096) -> list[float]:
        predictions = []
        with torch.no_grad():
            for start in range(0, len(cells), batch_size):
                batch = collate([(encode(c, self.ops), 0.0, 0) for c in cells[start : start + batch_size]])
                predictions += predictor(batch["tokens"], batch["lengths"]).tolist()
        return predictions

    def next_level(self, b: int) -> dict[str, Any]:
        """Rank 0 updates the predictor with level b-1, expands the beam, keeps the K children it ranks highest and
        draws ``correlation_sample`` children uniformly; every rank receives them (as cell lists) with their parents,
        predicted accuracies and the predictor's out-of-fold Spearman."""
        payload = None
        if self.rank == 0:
            predictor, correlation = self.predictor_after(b - 1)
            update = f"fine-tuned on b={b - 1}" if self.predictor_update == "finetune" and b > 2 else f"fit on b<{b}"
            print(f"[PNAS] b={b}: predictor {update}, out-of-fold Spearman {correlation:.3f}", flush=True)
            parents = expand_beam(self.beams[b - 1], self.ops)
            children = list(parents)
            scores = self.predict(predictor, children)
            top = sorted(range(len(children)), key=lambda i: -scores[i])[: self.K]
            sample = random.Random(f"{self.seed}/{b}").sample(range(len(children)),
                                                             min(self.correlation_sample, len(children)))
            payload = {"beam": [children[i].to_list() for i in top], "sample": [children[i].to_list() for i in sample],
                       "parents": {children[i].key(): parents[children[i]].to_list() for i in {*top, *sample}},
                       "predicted": {children[i].key(): scores[i] for i in {*top, *sample}},
                       "out_of_fold_spearman": correlation}
        return self.pool.ranks.from_rank_zero(f"level{b}", payload)

    # --------------------------------------------------------------------------------------------------- search
    def record_level(
        self, b: int, results: dict[PNASCell, dict], sample: list[PNASCell], predicted: dict[str, float],
        out_of_fold: float | None,
    ) -> None:
        """Add level b to the progress; rank 0 rewrites ``progress.json``, plots predicted vs. true accuracy and logs.
        The best cell and the correlations count only candidates that ran their full budget."""
        beam = self.beams[b]
        full = [cell for cell in beam if not results[cell].get("stopped_early")]
        best = max(full or beam, key=lambda c: (results[c]["accuracy"], c.key()))  # all stopped: the best truncated
        level: dict[str, Any] = {"b": b, "candidates": len(beam), "stopped_early": len(beam) - len(full),
                                 "best_accuracy": results[best]["accuracy"], "best_cell": best.to_list()}
        points: dict[str, tuple[list[float], list[float]]] = {}
        if predicted:
            for name, cells in (("beam", beam), ("random sample", sample)):
                cells = [c for c in cells if not results[c].get("stopped_early")]
                if cells:
                    points[name] = ([predicted[c.key()] for c in cells], [results[c]["accuracy"] for c in cells])
            level.update(out_of_fold_spearman=out_of_fold, spearman=spearman(*points.get("beam", ([], []))))
            if sample:
                level.update(sample_size=len(sample), sample_spearman=spearman(*points.get("random sample", ([], []))))
            print(f"[PNAS] b={b}: predictor Spearman on the {len(beam)} it chose {level['spearman']:.3f}"
                  + (f", on {len(sample)} random children {level['sample_spearman']:.3f}" if sample else "")
                  + f", out-of-fold on b < {b} {out_of_fold:.3f}", flush=True)
        self.progress.append(level)
        if self.rank == 0:
            write_atomic(self.output_dir / "progress.json", json.dumps(self.progress, indent=1).encode())
            png = None
            if points:
                title = f"b={b}: Spearman {level['spearman']:.3f} on the beam" + (
                    f", {level['sample_spearman']:.3f} on the sample" if sample else "")
                png = predictor_scatter_png(points, title)
                write_atomic(self.output_dir / "plots" / f"predicted_vs_true_b{b}.png", png)
            self.log_level(level, png)

    # ------------------------------------------------------------------------------------------------- tracking
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
            best = PNASCell.from_list(level["best_cell"]).to_genotype()
            payload: dict[str, Any] = {
                "candidates": wandb.Table(columns=["cell", "b", "accuracy", "epochs", "stopped early"], data=rows),
                "best_cell": wandb.Image(png_image(cell_diagram_png(best)),
                                         caption=f"b={b}, held-out accuracy {level['best_accuracy']:.4f}"),
            }
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

    def run(self) -> Genotype:
        """Run (or resume) the search; write and return the best cell of the last level as a Genotype."""
        self.pool.ranks = Ranks.launch("pnas", self.rank_timeout)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.progress, self.predictors = [], {}
        if self.rank == 0 and self.logger is not None:
            self.logger.log_hyperparams({"strategy": "pnas", **self.pool.fingerprint, "B": self.B, "K": self.K,
                                         "predictor": self.predictor_kind, "predictor_update": self.predictor_update})
        with self.pool.running():
            for b in range(1, self.B + 1):
                if b == 1:
                    self.beams[1], sample, parents, predicted, out_of_fold = one_block_cells(self.ops), [], {}, {}, None
                else:
                    level = self.next_level(b)
                    self.beams[b] = [PNASCell.from_list(cell) for cell in level["beam"]]
                    sample = [PNASCell.from_list(cell) for cell in level["sample"]]
                    parents = {cell: PNASCell.from_list(level["parents"][cell.key()])
                               for cell in [*self.beams[b], *sample]}
                    predicted, out_of_fold = level["predicted"], level["out_of_fold_spearman"]
                candidates = list(dict.fromkeys([*self.beams[b], *sample]))
                print(f"[PNAS] b={b}: training {len(candidates)} candidates", flush=True)
                results = self.train_level(b, candidates, parents)
                self.record_level(b, results, sample, predicted, out_of_fold)
        best = PNASCell.from_list(self.progress[-1]["best_cell"])
        genotype = best.to_genotype()
        if self.rank == 0:
            path = genotype.save(self.output_dir / "genotype.json")
            print(f"[PNAS] best cell (held-out accuracy {self.progress[-1]['best_accuracy']:.4f}):\n{genotype}\n"
                  f"written to {path}", flush=True)
            self.log_genotype(path)
        self.pool.ranks.close()
        return genotype
