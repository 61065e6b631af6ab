"""Write the architecture a search module currently derives to a JSON file next to the checkpoints."""

from __future__ import annotations

import os
from typing import Protocol, cast

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from lightning_nas.files import absolute, join
from lightning_nas.run_folder import run_directory


class Architecture(Protocol):
    """What a search strategy's ``genotype()`` returns: a Genotype, or e.g. an ENAS macro architecture."""

    def save(self, path: str | os.PathLike) -> str: ...


class SearchModule(Protocol):
    """What the genotype callbacks need of the LightningModule Lightning hands them."""

    def genotype(self) -> Architecture: ...


class GenotypeExport(pl.Callback):
    """At every training epoch end and at the end of fit, save ``pl_module.genotype()`` atomically to
    ``<checkpoint dir>/<filename>``; at the end, also print it with the file's path.

    Works with any LightningModule that has a ``genotype()`` method returning an object with ``save(path)``.
    ``every_epoch=False`` saves at the end of fit only, for a search whose architecture exists only then (random
    search with parameter sharing scores its candidates once, after training).
    """

    def __init__(self, filename: str = "genotype.json", every_epoch: bool = True) -> None:
        self.filename = filename
        self.every_epoch = every_epoch

    def path(self, trainer: pl.Trainer) -> str:
        return join(run_directory(trainer), self.filename)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_epoch:
            cast(SearchModule, pl_module).genotype().save(self.path(trainer))

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        architecture = cast(SearchModule, pl_module).genotype()
        path = architecture.save(self.path(trainer))
        print(f"\nFinal architecture:\n{architecture}\nwritten to {absolute(path)}")
