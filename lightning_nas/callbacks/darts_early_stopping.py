"""DARTS+ early stopping: end a DARTS search before skip_connect takes over its normal cell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from lightning_nas.errors import check

if TYPE_CHECKING:
    from lightning_nas.spaces.darts import SearchNetwork


class DARTSEarlyStopping(pl.Callback):
    """Stop a DARTS search (Liang et al., 2019: DARTS+) after the first epoch whose derived normal cell holds more than
    ``max_skip_connect`` skip_connects (DARTS+ stops at two or more: 1), or whose derived genotype has stayed the same
    for ``patience`` epochs (the ranking of α is stable, so searching on only risks collapse). None turns a criterion
    off.

    It reads ``pl_module.network.genotype()``, the supernet's own derivation before any skip_connect cap of the
    module (the cap would hide the collapse). Epochs of the α warm-up (``hparams.arch_warmup_epochs``) do not count,
    since α does not move in them. ``stopped_epoch`` and ``reason`` say why a search stopped (None if it did not).
    """

    def __init__(self, max_skip_connect: int | None = 1, patience: int | None = 10) -> None:
        check(max_skip_connect is None or max_skip_connect >= 0,
              f"max_skip_connect must be >= 0 (or null), got {max_skip_connect}")
        check(patience is None or patience >= 1, f"patience must be at least 1 epoch (or null), got {patience}")
        self.max_skip_connect, self.patience = max_skip_connect, patience
        self.last_genotype: dict[str, Any] | None = None
        self.unchanged_epochs = 0
        self.stopped_epoch: int | None = None
        self.reason: str | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch < pl_module.hparams.get("arch_warmup_epochs", 0):
            return
        genotype = cast("SearchNetwork", pl_module.network).genotype()
        skips = sum(op == "skip_connect" for op, _ in genotype.normal)
        self.unchanged_epochs = self.unchanged_epochs + 1 if genotype.to_dict() == self.last_genotype else 0
        self.last_genotype = genotype.to_dict()
        if self.max_skip_connect is not None and skips > self.max_skip_connect:
            self.reason = f"the normal cell holds {skips} skip_connects (more than {self.max_skip_connect})"
        elif self.patience is not None and self.unchanged_epochs >= self.patience:
            self.reason = f"the derived genotype has not changed for {self.unchanged_epochs} epochs"
        else:
            return
        self.stopped_epoch = trainer.current_epoch
        trainer.should_stop = True
        rank_zero_info(f"DARTS+ early stopping after epoch {self.stopped_epoch}: {self.reason}")

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_genotype": self.last_genotype,
            "unchanged_epochs": self.unchanged_epochs,
            "stopped_epoch": self.stopped_epoch,
            "reason": self.reason,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_genotype, self.unchanged_epochs = state_dict["last_genotype"], state_dict["unchanged_epochs"]
        self.stopped_epoch, self.reason = state_dict["stopped_epoch"], state_dict["reason"]
