"""Per-epoch seeding, so that a run resumed from a checkpoint draws the same random numbers as one never stopped."""

from __future__ import annotations

import random

import lightning.pytorch as pl
import numpy as np
import torch


class EpochSeeding(pl.Callback):
    """At every training epoch start, reseed torch, numpy and random from (the seed at fit start, epoch, rank).

    Augmentation, drop path, dropout and architecture sampling all draw from the global generators; seeding each
    epoch from its number makes the epoch a run resumes into repeat exactly what the uninterrupted run drew, with
    nothing to store in the checkpoint. Different ranks get different streams.
    """

    def __init__(self) -> None:
        self.seed = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seed = torch.initial_seed()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sequence = np.random.SeedSequence([self.seed, trainer.current_epoch, trainer.global_rank])
        torch_seed, numpy_seed, python_seed = sequence.generate_state(3)
        torch.manual_seed(int(torch_seed))
        np.random.seed(int(numpy_seed))
        random.seed(int(python_seed))
