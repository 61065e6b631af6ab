"""Stop a training run whose learning curve falls below the median of the curves seen so far."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import lightning.pytorch as pl
from lightning_nas.errors import ConfigError
import torch


class MedianStopping(pl.Callback):
    """The median-stopping rule: after validation epoch ``e`` (counting from 1), stop when the monitored value is
    worse than the ``quantile`` (0.5: the median) of the reference curves' values at epoch ``e``.

    ``curves`` are the learning curves of finished runs; with ``record=True`` the callback adds each run it watches to
    them at the end of fit (unless it stopped that run), so one instance can guard a sequence of fits. No decision is
    taken before ``grace_epochs`` or with fewer than ``min_curves`` curves that reach epoch ``e``. ``stopped_epoch``
    (None when the run was not stopped) and ``curve`` describe the last run.
    """

    def __init__(
        self,
        monitor: str = "val/top1",
        mode: Literal["max", "min"] = "max",
        curves: Sequence[Sequence[float]] = (),
        quantile: float = 0.5,
        grace_epochs: int = 1,
        min_curves: int = 3,
        record: bool = True,
    ) -> None:
        if mode not in ("max", "min"):
            raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
        if not 0 < quantile < 1:
            raise ConfigError(f"quantile must be in (0, 1), got {quantile}")
        self.monitor, self.mode, self.quantile = monitor, mode, quantile
        self.grace_epochs, self.min_curves, self.record = grace_epochs, min_curves, record
        self.curves: list[list[float]] = [list(map(float, curve)) for curve in curves]
        self.curve: list[float] = []
        self.stopped_epoch: int | None = None

    def threshold(self, epoch: int) -> float | None:
        """The reference value at ``epoch`` (1-based), or None if too few curves reach it."""
        values = [curve[epoch - 1] for curve in self.curves if len(curve) >= epoch]
        if len(values) < self.min_curves:
            return None
        quantile = self.quantile if self.mode == "max" else 1 - self.quantile
        return float(torch.tensor(values, dtype=torch.float64).quantile(quantile))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.curve, self.stopped_epoch = [], None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.curve.append(value)
        epoch = len(self.curve)
        threshold = self.threshold(epoch) if epoch >= self.grace_epochs else None
        worse = threshold is not None and (value < threshold if self.mode == "max" else value > threshold)
        if worse and self.stopped_epoch is None:
            self.stopped_epoch = epoch
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.record and self.stopped_epoch is None and self.curve:
            self.curves.append(list(self.curve))

    def state_dict(self) -> dict[str, Any]:
        return {"curves": self.curves, "curve": self.curve, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curves, self.curve = state_dict["curves"], state_dict["curve"]
        self.stopped_epoch = state_dict["stopped_epoch"]
