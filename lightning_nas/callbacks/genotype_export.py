"""Write the architecture a search module currently derives to a JSON file next to the checkpoints."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Protocol, cast

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only


class Architecture(Protocol):
    """What a search strategy's ``genotype()`` returns: a Genotype, or e.g. an ENAS macro architecture."""

    def save(self, path: str | os.PathLike) -> Path: ...


class SearchModule(Protocol):
    """What the genotype callbacks need of the LightningModule Lightning hands them."""

    def genotype(self) -> Architecture: ...


class VersionedLogger(Protocol):
    """The parts of Lightning's CSV and TensorBoard loggers that ``claim_version`` uses."""

    root_dir: str
    _version: int | str | None

    def _get_next_version(self) -> int: ...


def run_directory(trainer: pl.Trainer) -> Path:
    """The folder of this run's checkpoints (the logger's run folder when no checkpoint callback is set)."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    if dirpath:
        return Path(dirpath)
    # not trainer.log_dir: it broadcasts, and this is called on rank zero only
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    return Path(getattr(logger, "log_dir", None) or logger.save_dir or trainer.default_root_dir)


def claim_version(logger: Logger) -> None:
    """Give a CSV or TensorBoard logger without a set version the first ``version_N`` folder this process creates
    itself. Lightning picks max(N) + 1 from a listing, so two runs started together in one root both take the same
    folder; ``os.mkdir`` fails for all but one of them, so each run's folder (checkpoints, genotype, config, history)
    is its own. Call it on rank zero before the fit resolves its folders; the recipes do."""
    if getattr(logger, "_version", 0) is not None or not hasattr(logger, "_get_next_version"):
        return
    versioned = cast(VersionedLogger, logger)
    root = Path(versioned.root_dir)
    root.mkdir(parents=True, exist_ok=True)
    version = versioned._get_next_version()
    while True:
        try:
            (root / f"version_{version}").mkdir()
        except FileExistsError:
            version += 1
            continue
        versioned._version = version
        return


def run_id(trainer: pl.Trainer) -> str:
    """This run's name in its records: the W&B run id or the logger's ``version_N``; without a logger, the host and
    process."""
    if trainer.loggers:
        version = trainer.loggers[0].version
        return f"version_{version}" if isinstance(version, int) else str(version)
    return f"{socket.gethostname()}-{os.getpid()}"


class GenotypeExport(pl.Callback):
    """At every training epoch end and at the end of fit, save ``pl_module.genotype()`` atomically to
    ``<checkpoint dir>/<filename>``; at the end, also print it with the file's path.

    Works with any LightningModule that has a ``genotype()`` method returning an object with ``save(path)``.
    """

    def __init__(self, filename: str = "genotype.json") -> None:
        self.filename = filename

    def path(self, trainer: pl.Trainer) -> Path:
        return run_directory(trainer) / self.filename

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        cast(SearchModule, pl_module).genotype().save(self.path(trainer))

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        architecture = cast(SearchModule, pl_module).genotype()
        path = architecture.save(self.path(trainer))
        print(f"\nFinal architecture:\n{architecture}\nwritten to {path}")
