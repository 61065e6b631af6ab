"""Run by test_base.py as ``python ddp_probe.py OUT_DIR``: a 2-process CPU DDP fit on the digits in search mode in which
every rank saves the labels it trained on, per epoch and half, and the images it validated on, to OUT_DIR/rank<r>.pt."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from lightning_nas.data import DigitsDataModule

EPOCHS, SEED, VAL_SPLIT, BATCH_SIZE = 2, 3, 301, 100


class Probe(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.classifier = torch.nn.Linear(64, 10)
        self.train_labels: dict[tuple[int, str], list[int]] = {}
        self.val_images: list[torch.Tensor] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        for half, (_, y) in batch.items():
            self.train_labels.setdefault((self.current_epoch, half), []).extend(y.tolist())
        x, y = batch["weights"]
        return F.cross_entropy(self.classifier(x.flatten(1)), y)

    def on_validation_epoch_start(self) -> None:
        self.val_images = []

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self.val_images.append(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    probe = Probe()
    data = DigitsDataModule(mode="search", val_split=VAL_SPLIT, seed=SEED, batch_size=BATCH_SIZE)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=EPOCHS,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(probe, data)
    record = {"train_labels": probe.train_labels, "val_images": torch.cat(probe.val_images)}
    torch.save(record, Path(sys.argv[1]) / f"rank{trainer.global_rank}.pt")
