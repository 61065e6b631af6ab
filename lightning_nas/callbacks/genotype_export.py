"""Write the architecture a search module currently derives to a JSON file next to the checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only


class Architecture(Protocol):
    """What a search strategy's ``genotype()`` returns: a Genotype, or e.g. an ENAS macro architecture."""

    def save(self, path: str | os.PathLike) -> Path: ...


def run_directory(trainer: pl.Trainer) -> Path:
    """The folder of this run's checkpoints (the logger's run folder when no checkpoint callback is set)."""
    callback = trainer.checkpoint_callback
    if callback is not None and getattr(callback, "dirpath", None):
        return Path(callback.dirpath)
    # not trainer.log_dir: it broadcasts, and this is called on rank zero only
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    return Path(getattr(logger, "log_dir", None) or logger.save_dir or trainer.default_root_dir)


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
        pl_module.genotype().save(self.path(trainer))

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        architecture = pl_module.genotype()
        path = architecture.save(self.path(trainer))
        print(f"\nFinal architecture:\n{architecture}\nwritten to {path}")
