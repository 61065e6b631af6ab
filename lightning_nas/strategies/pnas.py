"""PNAS: progressive search over cells of 1..B blocks, guided by an accuracy predictor (Liu et al., ECCV 2018).

``PNASSearch.run`` is Algorithm 1: train every one-block cell and fit the predictor on them; for b = 2..B, expand
every cell of the beam by every possible next block, rank the children with the predictor, keep the top K, train them
as proxy networks and update the predictor with their accuracies; the best cell of the last level is the answer.
It searches any space that offers progressive growth (``SearchSpace.progressive``, a ``Growth``: the first level,
an architecture's children, the predictor's tokens, weight inheritance), the PNAS cell space by default; "cell" and
"block" below are its words for a grown architecture and one step.
Early-terminated candidates train neither the predictor nor count as the best cell: their accuracy is that of a
truncated run. The predictor's life cycle (fit, fine-tuned or refit per level, saved under ``predictor/``) is
``pnas_predictor.LevelPredictors``; what the search reports per level (``progress.json``, scatters, a logger) is
``pnas_progress.SearchProgress``.

The search is a plain driver object, not a LightningModule: it is not one optimisation but many short, independent
fits (one per candidate, one per predictor update) with a beam carried between them. Each of those fits is an ordinary
LightningModule (``CandidateModule``, ``AccuracyPredictor``) run by its own Trainer, so callbacks such as
``MedianStopping`` and ``WeightInheritance`` plug in unchanged.

Fault tolerance and parallelism both rest on the results file of a ``CandidatePool`` (``candidates``): a restarted
search skips every finished candidate, and the ranks of a multi-process launch (``ranks``) share each level's
candidates. Rank 0 updates the predictor and chooses each level, so all ranks agree on the beam; the saved predictors
(re-derived level by level from the results file when missing) make a restarted search choose exactly as the
uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import io
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger

from lightning_nas.callbacks import MedianStopping, WeightInheritance
from lightning_nas.data import NASDataModule
from lightning_nas.errors import check
from lightning_nas.files import write_atomic
from lightning_nas.ops import PNAS_OPS
from lightning_nas.spaces import Architecture, Growth, create_space, space_class, space_options
from lightning_nas.strategies.candidates import CandidatePool, LRInterval, ProxyBudget
from lightning_nas.strategies.pnas_predictor import AccuracyPredictor, LevelPredictors, PredictorUpdate
from lightning_nas.strategies.pnas_progress import SearchProgress
from lightning_nas.strategies.ranks import Ranks


Cell = Any
"""A grown architecture of the searched space's ``Growth`` (the PNAS space's: a ``PNASCell``)."""


def expand_beam(growth: Growth, beam: Sequence[Cell]) -> dict[Cell, Cell]:
    """Distinct children of every cell in the beam, each mapped to the first parent it came from."""
    children: dict[Cell, Cell] = {}
    for parent in beam:
        for child in growth.children(parent):
            children.setdefault(child, parent)
    return children


@dataclass
class Level:
    """Level b of the search as rank 0 chose it: the ``beam`` (every one-block cell at b=1; after that the K children
    the predictor ranks highest), the ``sample`` of children drawn uniformly to measure the predictor, each child's
    parent, the accuracies predicted for them and the predictor's out-of-fold Spearman (none at b=1)."""

    b: int
    beam: list[Cell]
    sample: list[Cell] = field(default_factory=list)
    parents: dict[Cell, Cell] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    out_of_fold: float | None = None

    @property
    def candidates(self) -> list[Cell]:
        """The cells the level trains: the beam and the sample, each once."""
        return list(dict.fromkeys([*self.beam, *self.sample]))

    def to_json(self, growth: Growth) -> dict[str, Any]:
        """The level as JSON data, which rank 0 sends to the other ranks."""
        return {"b": self.b, "beam": [growth.to_data(cell) for cell in self.beam],
                "sample": [growth.to_data(cell) for cell in self.sample],
                "parents": {growth.key(child): growth.to_data(parent) for child, parent in self.parents.items()},
                "predicted": self.predicted, "out_of_fold_spearman": self.out_of_fold}

    @classmethod
    def from_json(cls, data: dict[str, Any], growth: Growth) -> Level:
        beam, sample = ([growth.from_data(cell) for cell in data[name]] for name in ("beam", "sample"))
        parents = {cell: growth.from_data(data["parents"][growth.key(cell)]) for cell in [*beam, *sample]}
        return cls(data["b"], beam, sample, parents, data["predicted"], data["out_of_fold_spearman"])


class PNASSearch:
    """Progressive Neural Architecture Search (Liu et al., 2018) with a results file that makes it resumable.

    ``space`` is a registered space (or ``package.module:Class``) that offers progressive growth; ``B`` and ``ops``
    are its ``nodes`` and ``ops`` options (the PNAS space's blocks per cell, one level each, and candidate ops), the
    space's defaults when left out. A space without progressive growth is refused in one line.

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
        space: str = "pnas",
        B: int | None = None,
        K: int = 256,
        N: int = 2,
        F: int = 24,
        epochs: int = 20,
        lr: float = 0.025,
        lr_interval: LRInterval = "epoch",
        limit_train_batches: int | float = 1.0,
        ops: Sequence[str] | None = None,
        predictor: Literal["lstm", "mlp"] = "lstm",
        predictor_epochs: int = 50,
        predictor_lr: float = 0.01,
        ensemble_size: int = 5,
        predictor_update: PredictorUpdate = "finetune",
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
        check(B is None or B >= 1,
              f"B (blocks per cell, one level each) must be at least 1, got {B}; the paper searches B=5")
        check(K >= 1, f"K (beam: candidates trained per level) must be at least 1, got {K}; the paper keeps K=256")
        budget = ProxyBudget(N, F, epochs, lr, lr_interval, limit_train_batches)  # the paper: N=2, F=24, 20 epochs
        check(predictor_epochs >= 1, f"predictor_epochs must be at least 1, got {predictor_epochs}")
        check(predictor_lr > 0, f"predictor_lr must be positive, got {predictor_lr}")
        check(ops is None or len(ops) > 0, f"ops is empty: give the candidate ops, e.g. {list(PNAS_OPS)}")
        if not space_class(space).offers("progressive"):  # refused before its options, which it may not take
            raise create_space(space).lacks("progressive")
        self.space = create_space(space, **space_options(B, ops))
        self.growth = self.space.progressive()
        level_one = len(self.growth.first())
        check(ensemble_size >= 1 and (self.growth.levels == 1 or ensemble_size <= level_one),
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
        self.B, self.K, self.budget = self.growth.levels, K, budget
        self.predictor_kind, self.predictor_epochs, self.predictor_lr = predictor, predictor_epochs, predictor_lr
        self.ensemble_size, self.predictor_update = ensemble_size, predictor_update
        self.correlation_sample = correlation_sample
        self.early_termination, self.termination_grace_epochs = early_termination, termination_grace_epochs
        self.inherit_weights, self.accelerator, self.seed = inherit_weights, accelerator, seed
        self.num_threads, self.logger, self.rank_timeout = num_threads, logger, rank_timeout
        settings = {**self.growth.settings, "early_termination": early_termination,
                    "termination_grace_epochs": termination_grace_epochs, "inherit_weights": inherit_weights}
        self.pool = CandidatePool(data, self.output_dir / "results.jsonl", budget, accelerator, seed, label="PNAS",
                                  settings=settings, space=self.space)
        self.results = self.pool.results
        self.beams: dict[int, list[Cell]] = {}
        self.predictors = LevelPredictors(self.output_dir / "predictor", self.predictor_records, self.pool, self.growth,
                                          predictor, predictor_epochs, predictor_lr, ensemble_size, predictor_update,
                                          seed)
        self.tracker = SearchProgress(self.output_dir, self.results, self.growth, logger)

    @property
    def rank(self) -> int:
        return self.pool.ranks.rank

    @property
    def progress(self) -> list[dict[str, Any]]:
        """Per level: b, candidates, best accuracy and cell, and from b=2 the predictor's Spearman correlations."""
        return self.tracker.levels

    # --------------------------------------------------------------------------------------------------- search
    def run(self) -> Architecture:
        """Algorithm 1, or its resumption: write and return the best cell of the last level as the space's
        architecture (the PNAS space's: a Genotype)."""
        self.start()
        with self.pool.running():
            self.train_level(Level(1, self.growth.first()))  # every one-block cell
            for b in range(2, self.B + 1):
                # update the predictor with level b-1, expand the beam, keep the K children it ranks highest, train them
                self.train_level(self.next_level(b))
        return self.finish()

    def next_level(self, b: int) -> Level:
        """Level b as rank 0 chose it (``choose_level``), on every rank."""
        chosen = self.choose_level(b).to_json(self.growth) if self.rank == 0 else None
        return Level.from_json(self.pool.ranks.from_rank_zero(f"level{b}", chosen), self.growth)

    def choose_level(self, b: int) -> Level:
        """Update the predictor with level b-1, expand the beam, keep the K children it ranks highest and draw
        ``correlation_sample`` children uniformly."""
        predictor, out_of_fold = self.predictor_after(b - 1)
        update = f"fine-tuned on b={b - 1}" if self.predictor_update == "finetune" and b > 2 else f"fit on b<{b}"
        print(f"[PNAS] b={b}: predictor {update}, out-of-fold Spearman {out_of_fold:.3f}", flush=True)
        parents = expand_beam(self.growth, self.beams[b - 1])
        children = list(parents)
        scores = self.predict(predictor, children)
        top = sorted(range(len(children)), key=lambda i: -scores[i])[: self.K]
        sample = random.Random(f"{self.seed}/{b}").sample(range(len(children)),
                                                         min(self.correlation_sample, len(children)))
        chosen = {*top, *sample}
        return Level(b, [children[i] for i in top], [children[i] for i in sample],
                     {children[i]: parents[children[i]] for i in chosen},
                     {self.growth.key(children[i]): scores[i] for i in chosen}, out_of_fold)

    def train_level(self, level: Level) -> None:
        """Train the level's unfinished candidates (each rank claiming the next) and record the level."""
        b, candidates = level.b, level.candidates
        self.beams[b] = level.beam
        print(f"[PNAS] b={b}: training {len(candidates)} candidates", flush=True)
        reference = [r["curve"] for r in self.finished().values() if r["b"] == b - 1 and not r.get("stopped_early")]
        by_key = {self.growth.key(cell): cell for cell in candidates}
        results = self.pool.train_all(
            f"b={b}", list(by_key),
            lambda key: self.train_candidate(by_key[key], b, level.parents.get(by_key[key]), reference),
        )
        self.tracker.record(b, level.beam, level.sample, {cell: results[key] for key, cell in by_key.items()},
                            level.predicted, level.out_of_fold, write=self.rank == 0)

    def start(self) -> None:
        """Join the other ranks (if any), set the threads and begin afresh the records a run keeps in memory."""
        self.pool.ranks = Ranks.launch("pnas", self.rank_timeout)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.predictors.ensembles = {}
        self.tracker.start({"strategy": "pnas", "space": self.space.name, **self.pool.fingerprint, "B": self.B,
                            "K": self.K,
                            "predictor": self.predictor_kind, "predictor_update": self.predictor_update},
                           write=self.rank == 0)

    def finish(self) -> Architecture:
        """The best cell of the last level; rank 0 writes it to ``genotype.json`` and logs it."""
        genotype = self.growth.architecture(self.growth.from_data(self.progress[-1]["best_cell"]))
        if self.rank == 0:
            path = genotype.save(self.output_dir / "genotype.json")
            print(f"[PNAS] best cell (held-out accuracy {self.progress[-1]['best_accuracy']:.4f}):\n{genotype}\n"
                  f"written to {path}", flush=True)
            self.tracker.log_genotype(path)
        self.pool.ranks.close()
        return genotype

    # ----------------------------------------------------------------------------------------------- candidates
    def weights_path(self, cell: Cell) -> Path:
        return self.output_dir / "weights" / f"{hashlib.sha1(self.growth.key(cell).encode()).hexdigest()[:16]}.pt"

    def inheritance_mapping(self, parent: Cell, child: Cell) -> dict[str, str | None]:
        """The candidate module's prefixes of the child's network → the parent's computing the same thing (the
        growth's ``inheritance``); the new block starts fresh."""
        return {f"network.{prefix}": None if source is None else f"network.{source}"
                for prefix, source in self.growth.inheritance(parent, child, self.budget.N).items()}

    def train_candidate(self, cell: Cell, b: int, parent: Cell | None, reference: list[list[float]]) -> dict:
        """Train one proxy network and return its result record (without writing it). ``reference``: the curves early
        termination compares against; ``parent``: whose weights the child inherits."""
        callbacks: list[pl.Callback] = []
        stopping = None
        if self.early_termination and reference:
            stopping = MedianStopping("val/top1", curves=reference, grace_epochs=self.termination_grace_epochs,
                                      record=False)
            callbacks.append(stopping)
        if self.inherit_weights and parent is not None:
            callbacks.append(WeightInheritance(self.weights_path(parent), self.inheritance_mapping(parent, cell)))
        module, record = self.pool.train(self.growth.key(cell), self.growth.architecture(cell), callbacks)
        if self.inherit_weights:
            buffer = io.BytesIO()
            torch.save(module.state_dict(), buffer)
            write_atomic(self.weights_path(cell), buffer.getvalue())
        stopped_epoch = stopping.stopped_epoch if stopping else None
        return {**record, "b": b, "cell": self.growth.to_data(cell), "stopped_epoch": stopped_epoch,
                "stopped_early": stopped_epoch is not None}

    def finished(self) -> dict[Cell, dict]:
        return {self.growth.from_data(r["cell"]): r for r in self.results.read()}

    # ------------------------------------------------------------------------------------------------ predictor
    def predictor_records(self, b: int) -> list[dict]:
        """What the predictor learns from after level b: the beams' results of levels 1..b in a fixed order (not
        the order ranks wrote them), without early-terminated runs and without the correlation samples."""
        finished = self.finished()
        records = [finished[cell] for level in range(1, b + 1) for cell in self.beams[level]]
        return sorted((r for r in records if not r.get("stopped_early")),
                      key=lambda r: (r["b"], self.growth.key(self.growth.from_data(r["cell"]))))

    def predictor_after(self, b: int) -> tuple[AccuracyPredictor, float]:
        """The ensemble that has learned levels 1..b and its out-of-fold Spearman correlation on their results."""
        return self.predictors.after(b)

    def predict(self, predictor: AccuracyPredictor, cells: list[Cell]) -> list[float]:
        """``predictor``'s accuracy for each cell."""
        return self.predictors.predict(predictor, cells)

    # --------------------------------------------------- measurements of the proxy and predictor, outside ``run``
    @contextmanager
    def session(self) -> Iterator[None]:
        """Train under the search's settings without running it: with its ``num_threads`` (torch's own setting
        restored after) and its results file held, as ``run`` holds them."""
        threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            with self.pool.running():
                yield
        finally:
            torch.set_num_threads(threads)

    def level(self, cell: Cell) -> int:
        """How many steps ``cell`` has grown: its tokens hold ``len(step)`` a step."""
        return len(self.growth.tokens(cell)) // len(self.growth.step)

    def train_cells(self, name: str, cells: Sequence[Cell]) -> list[dict[str, Any]]:
        """The cells' result records as the search trains its candidates (each its own seed, no early termination, no
        inherited weights), training those the results file lacks."""
        by_key = {self.growth.key(cell): cell for cell in cells}
        records = self.pool.train_all(name, list(by_key),
                                      lambda key: self.train_candidate(by_key[key], self.level(by_key[key]), None, []))
        return [records[self.growth.key(cell)] for cell in cells]

    def train_with_seeds(self, name: str, cells: Sequence[Cell],
                         seeds: Sequence[int]) -> dict[tuple[Cell, int], dict[str, Any]]:
        """Every (cell, training seed)'s result record under the search's proxy budget, the same seeds for every cell
        (not each candidate's own), training those the results file lacks."""
        jobs = {f"{self.growth.key(cell)}/seed{seed}": (cell, seed) for seed in seeds for cell in cells}

        def train(job: str) -> dict[str, Any]:
            cell, seed = jobs[job]
            record = self.pool.train(job, self.growth.architecture(cell), seed=seed)[1]
            return {**record, "b": self.level(cell), "seed": seed}

        return {jobs[job]: record for job, record in self.pool.train_all(name, list(jobs), train).items()}
