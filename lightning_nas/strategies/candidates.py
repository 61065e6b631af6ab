"""Proxy training of candidate architectures: what PNAS, random search and the found-vs-random report share.

A candidate is a genotype stacked into a small proxy network, trained for a fixed budget and scored on the data
module's validation images. ``CandidatePool`` trains each candidate once and keeps its result in a results file:
every finished candidate is appended atomically, a restarted run skips what the file holds, and under a multi-process
launch (see ``ranks``) each rank claims the next unclaimed candidate from the launcher's store whenever it is free, so
a fast rank trains more of them than a slow one; after a barrier every rank reads all the results from the file.

While a pool runs, rank 0 holds an exclusive lock on its output folder (a second search there refuses to start) and
the results file is bound to the pool's fingerprint: everything that changes a candidate's accuracy.

The results file (``ResultsFile``) is JSON Lines, one finished candidate per line. Every append rewrites the file to a
temporary file and renames it over the old one, under an exclusive lock, so a run killed at any moment leaves either
the old or the new file, and several ranks may append at once. A truncated last line (a file copied mid-write, a full
disk) is skipped with a warning; a corrupt line elsewhere is an error. A second record of the same ``key`` (two writers
that raced before this file was locked per run) is ignored: the first one counts. The fingerprint is stored beside the
file (``<name>.fingerprint.json``), so a restart never mixes accuracies of different proxy budgets.
"""

from __future__ import annotations

import fcntl
import json
import hashlib
import inspect
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from lightning_nas.data import NASDataModule
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import is_local, write_atomic
from lightning_nas.spaces import Architecture, SearchSpace, create_space
from lightning_nas.strategies.finite import check_finite
from lightning_nas.strategies.ranks import Ranks


LRInterval = Literal["epoch", "step"]
"""How often the proxy's cosine schedule steps: once per epoch (the papers' code), or every batch down to 0 at the
last one, so that a budget of a few epochs still ends annealed, a finished short training rather than a snapshot
taken mid-descent."""


@dataclass(frozen=True)
class ProxyBudget:
    """What every candidate's proxy training costs, one value for the searches, the report's retraining and the table
    builder: its network (``F`` channels and ``N`` cells per stage, which reach the space's ``build`` as ``C`` and
    ``N`` where it takes them, and ``network_options``, the space's other network options), ``epochs`` epochs of at
    most ``limit_train_batches`` batches by SGD from ``lr``, cosine-decayed per ``lr_interval``, scored on at most
    ``limit_val_batches`` validation batches. Checked here, once, when made."""

    N: int = 2
    F: int = 24
    epochs: int = 20
    lr: float = 0.025
    lr_interval: LRInterval = "epoch"
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    network_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self.N >= 1, f"N (cells per stage of the proxy network) must be at least 1, got {self.N}")
        check(self.F >= 1, f"F (channels of the proxy network's first cells) must be at least 1, got {self.F}")
        check(self.epochs >= 1, f"epochs (per candidate) must be at least 1, got {self.epochs}")
        check(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive finite number, got {self.lr}")
        check(self.lr_interval in ("epoch", "step"), f"lr_interval must be 'epoch' or 'step', got {self.lr_interval!r}")
        for name in ("limit_train_batches", "limit_val_batches"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")

    def network(self, space: SearchSpace) -> dict[str, Any]:
        """The options of ``space.build`` for the proxy network (``SearchSpace.sized``)."""
        return space.sized(self.F, self.N, **self.network_options)

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The budget in a results file's fingerprint, in the keys files were written with (``network_options``
        only where given)."""
        keys = ("N", "F", "epochs", "lr", "limit_train_batches", "limit_val_batches", "lr_interval")
        extra = {"network_options": dict(self.network_options)} if self.network_options else {}
        return {**{key: getattr(self, key) for key in keys}, **extra}


class CandidateModule(pl.LightningModule):
    """A candidate architecture of a search space built into its proxy network (``SearchSpace.build`` with the
    budget's ``network``: for cell spaces 3N cells of F channels, two of them stride-2 reductions), trained with SGD
    and cosine decay (per the budget's ``lr_interval``); ``curve`` holds the validation accuracy after each epoch.
    ``genotype`` is the architecture in the space's JSON form (a Genotype's dict for the cell spaces), so it survives
    hparams."""

    def __init__(
        self,
        genotype: dict[str, Any],
        num_classes: int,
        in_chans: int,
        budget: ProxyBudget = ProxyBudget(),
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        space: str = "darts",
        space_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.budget, self.momentum, self.weight_decay = budget, momentum, weight_decay
        search_space = create_space(space, **(space_options or {}))
        self.network = search_space.build(search_space.from_json(json.dumps(genotype)), num_classes, in_chans,
                                          **budget.network(search_space))
        self.curve: list[float] = []
        self._correct = self._seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.network(x), y)
        check_finite(self, "candidate training", {"train/loss": loss}, hint="lower the candidates' lr")
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
        optimizer = torch.optim.SGD(self.parameters(), lr=self.budget.lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        interval = self.budget.lr_interval
        steps = self.budget.epochs if interval == "epoch" else int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


NUMERIC_CODE = ("ops", "spaces", "networks", "genotypes", "data", "strategies/candidates.py")
"""The package's code that computes a candidate's accuracy, besides its architecture and budget."""


PACKAGE = Path(__file__).resolve().parents[1]


def code_key(package: Path = PACKAGE) -> str:
    """What changes a retrained accuracy besides the architecture, budget and seed: the source of the code that builds,
    feeds and trains a candidate (``NUMERIC_CODE``), torch's version and this process's torch thread count. A cell
    retrained under another key may differ by about the found-vs-random margin (SEARCH_QUALITY.md), so one verdict
    compares only results of one key."""
    digest = hashlib.sha1()
    for part in NUMERIC_CODE:
        files = sorted((package / part).rglob("*.py")) if (package / part).is_dir() else [package / part]
        for file in files:
            digest.update(file.relative_to(package).as_posix().encode() + b"\0" + file.read_bytes())
    digest.update(f"torch {torch.__version__}, {torch.get_num_threads()} threads".encode())
    return digest.hexdigest()[:12]


def candidate_seed(seed: int, key: str) -> int:
    """The training seed of one candidate: a function of the run's seed and the candidate alone, so a candidate
    trains the same whichever rank, order or restart trains it."""
    return (seed + int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)) % 2**31


DATA_ENGINEERING = frozenset({"num_workers", "pin_memory", "persistent_workers"})
"""Data module arguments that change how fast images arrive, not which: left out of the fingerprint."""


FINGERPRINT_ADDED = {"lr_interval": "epoch"}
"""Keys that joined the pool's fingerprint after results files existed, with the value those files were trained under
(before ``lr_interval`` every proxy's cosine stepped per epoch)."""


def data_fingerprint(data: NASDataModule) -> dict[str, Any]:
    """The data module's class and the init arguments it keeps as attributes of the same name."""
    names = [name for name in inspect.signature(type(data).__init__).parameters
             if name not in ("self", *DATA_ENGINEERING) and hasattr(data, name)]
    return {"class": f"{type(data).__module__}.{type(data).__qualname__}", **{n: getattr(data, n) for n in names}}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: ``{"data": {"seed": 0}}`` → ``{"data.seed": 0}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class ResultsFile:
    """Append-only JSON Lines file of candidate results, safe against kills and concurrent writers."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        records, keys = [], set()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ConfigError(f"{self.path}:{number} is not valid JSON; repair or remove that line") from None
                warnings.warn(f"{self.path}: ignoring a truncated last line (that candidate will be trained again)")
                continue
            if record.get("key") is None or record["key"] not in keys:
                records.append(record)
                keys.add(record.get("key"))
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.read()) + json.dumps(record) + "\n")

    @property
    def fingerprint_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.fingerprint.json")

    def bind(self, fingerprint: dict[str, Any], added: dict[str, Any] | None = None) -> None:
        """Tie the file to ``fingerprint`` (JSON data): store it on first use (or while the file holds no result, so
        that a run that failed on a bad value never blocks its corrected rerun); raise a one-line ConfigError naming
        the keys that differ when the file holds results written under another one. A file from before fingerprints is adopted.
        ``added`` holds the keys the fingerprint gained later (dotted), each with the value every file written before
        it was trained under: a stored fingerprint without the key reads as that value, so old results still resume."""
        fingerprint = json.loads(json.dumps(fingerprint, default=str))
        if self.fingerprint_path.is_file() and self.read():  # a run that failed before any result binds nothing
            try:
                stored = {**(added or {}), **flatten(json.loads(self.fingerprint_path.read_text()))}
            except json.JSONDecodeError:
                raise ConfigError(f"{self.fingerprint_path} is not valid JSON (truncated?): restore it, or delete it "
                                  f"to adopt {self.path}'s results under this run's configuration") from None
            wanted = flatten(fingerprint)
            differ = sorted(key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key))
            if differ:
                changes = ", ".join(f"{key} {stored.get(key)!r} -> {wanted.get(key)!r}" for key in differ)
                raise ConfigError(f"{self.path} holds results of another configuration ({changes}): restore those "
                                  f"settings to resume it, or give another output folder")
        else:
            write_atomic(self.fingerprint_path, json.dumps(fingerprint, indent=1, sort_keys=True))


class CandidatePool:
    """Train candidates once each with one proxy budget (``ProxyBudget``) and keep the results.

    ``data`` is an eval-mode data module: candidates train on its train split and are scored on its validation
    images (the held-out split when ``val_split`` > 0, which a search needs; the test set otherwise, which a final
    comparison wants; ``limit_val_batches`` scores on a fixed first part of them). Records carry a ``key`` naming
    the candidate; ``train_all`` trains whatever the file lacks.
    """

    def __init__(
        self,
        data: NASDataModule,
        results_path: str | os.PathLike,
        budget: ProxyBudget = ProxyBudget(),
        accelerator: str = "auto",
        seed: int = 0,
        ranks: Ranks | None = None,
        label: str = "candidates",
        settings: dict[str, Any] | None = None,
        space: SearchSpace | None = None,
    ) -> None:
        check(is_local(results_path), f"{results_path} is not a local path: a search locks its results file, which "
                                      f"remote filesystems cannot; write it to a local folder and copy it after")
        self.data, self.results = data, ResultsFile(results_path)
        self.budget, self.accelerator, self.seed = budget, accelerator, seed
        self.ranks = ranks or Ranks()
        self.label = label
        self.settings = dict(settings or {})
        self.space = space or create_space("darts")
        self._depth = 0  # nesting of ``running``

    @property
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes a candidate's accuracy: data, proxy network, training budget, seed, settings."""
        return {"data": data_fingerprint(self.data), **self.budget.fingerprint, "seed": self.seed, **self.settings}

    @contextmanager
    def running(self) -> Iterator[None]:
        """Hold the results file for a run: rank 0 takes an exclusive lock on ``.<results file>.run.lock`` beside it
        (refusing, in one line, while another search or report uses that file) and binds the file to the
        fingerprint; every rank gets rank 0's verdict, so none waits on a lock it does not hold. Re-entrant: a search
        wraps all its levels in it, each level's ``train_all`` enters it again."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        lock, error = None, None
        if self.ranks.rank == 0:
            path = self.results.path.with_name(f".{self.results.path.name}.run.lock")
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(path, "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.results.bind(self.fingerprint, added=FINGERPRINT_ADDED)
            except BlockingIOError:
                error = (f"another search is running on {self.results.path} (it holds {path}): wait for it to end "
                         f"or give another output folder")
            except ConfigError as refused:
                error = str(refused)
        error = self.ranks.from_rank_zero(f"{self.label}/start", error)
        try:
            if error:
                raise ConfigError(error)
            self._depth = 1
            yield
        finally:
            self._depth = 0
            if lock is not None:
                lock.close()  # closing the file releases the lock

    def trainer(self, max_epochs: int, callbacks: Sequence[pl.Callback] = (), **kwargs: Any) -> pl.Trainer:
        """A single-device Trainer; under a multi-process launch on GPUs, rank r's candidates use GPU LOCAL_RANK."""
        gpu = self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())
        devices = [int(os.environ.get("LOCAL_RANK", "0"))] if gpu else 1
        return pl.Trainer(max_epochs=max_epochs, accelerator=self.accelerator, devices=devices, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          num_sanity_val_steps=0, callbacks=list(callbacks), **kwargs)

    def train(
        self, key: str, genotype: Architecture, callbacks: Sequence[pl.Callback] = (), seed: int | None = None
    ) -> tuple[CandidateModule, dict[str, Any]]:
        """Train one proxy network of ``genotype`` (an architecture of the pool's space); return it with its result
        record (not yet written). ``seed`` fixes the training
        seed (the same for every architecture in a fair comparison); by default each candidate has its own."""
        pl.seed_everything(candidate_seed(self.seed, key) if seed is None else seed, verbose=False)
        arch = json.loads(self.space.to_json(genotype))
        module = CandidateModule(arch, self.data.num_classes, self.data.in_chans, self.budget, space=self.space.name,
                                 space_options=self.space.options)
        start = time.perf_counter()
        trainer = self.trainer(self.budget.epochs, callbacks, limit_train_batches=self.budget.limit_train_batches,
                               limit_val_batches=self.budget.limit_val_batches)
        try:
            trainer.fit(module, datamodule=self.data)
        except FloatingPointError as diverged:
            raise FloatingPointError(f"candidate {key} diverged: {diverged}") from None
        record = {"key": key, "genotype": arch, "accuracy": module.curve[-1], "curve": module.curve,
                  "epochs": len(module.curve), "seconds": round(time.perf_counter() - start, 3)}
        return module, record

    def finished(self) -> dict[str, dict[str, Any]]:
        return {record["key"]: record for record in self.results.read()}

    def train_all(self, name: str, keys: Sequence[str], train_one: Callable[[str], dict[str, Any]]) -> dict[str, dict]:
        """Train the unfinished ``keys`` with ``train_one`` (which returns a record), each rank claiming the next one
        whenever it is free, appending each result as it finishes; wait for the other ranks; return every key's
        record. The pool holds its folder meanwhile (``running``)."""
        with self.running():
            finished = self.finished()
            ranks = self.ranks
            for index in ranks.claim(name, len(keys)):
                if keys[index] in finished:
                    continue
                record = train_one(keys[index])
                self.results.append(record)
                finished = self.finished()  # all ranks' results so far
                done = [finished[k]["accuracy"] for k in keys if k in finished]
                stopped = f", stopped at epoch {record['stopped_epoch']}" if record.get("stopped_early") else ""
                print(f"[{self.label} rank {ranks.rank}] {name}: {len(done)}/{len(keys)} candidates done, accuracy "
                      f"{record['accuracy']:.4f}{stopped}, best so far {max(done):.4f}", flush=True)
            ranks.barrier(name)
        finished = self.finished()
        missing = [key for key in keys if key not in finished]
        if missing:
            raise RuntimeError(f"{name}: no result for {len(missing)} candidates, e.g. {missing[0]}")
        return {key: finished[key] for key in keys}

    @property
    def output_dir(self) -> Path:
        return self.results.path.parent
