"""Final training: a network stacked from a found genotype, trained from scratch with the papers' evaluation tricks.

DARTS (and ENAS, PNAS after it) retrain the found cell in a larger network with an auxiliary head (loss weight 0.4),
drop path whose probability rises linearly with the epoch, SGD with cosine (CIFAR-10) or per-epoch exponential
(ImageNet) decay, and label smoothing on ImageNet. Gradient clipping belongs to the Trainer
(``gradient_clip_val``); an EMA of the weights to Lightning's ``EMAWeightAveraging`` callback, which also validates,
tests and checkpoints with the averaged weights.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.callbacks import EpochSeeding
from lightning_nas.genotypes import Genotype, resolve_genotype

EVAL_STAGES = ("val", "test")


def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Top-1 accuracy, and top-5 when there are more than 5 classes."""
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)


class FinalTraining(pl.LightningModule):
    """Train ``nas_cifar`` or ``nas_imagenet`` built from ``genotype`` (a published name, a genotype file written by
    a search, or a dict). The genotype is kept in the hyperparameters as a plain dict, so a checkpoint rebuilds the
    exact network and loads with ``weights_only=True``."""

    def __init__(
        self,
        genotype: str | dict[str, Any] = "DARTS_V2",
        network: Literal["cifar", "imagenet"] = "cifar",
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        lr: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        nesterov: bool = False,
        scheduler: Literal["cosine", "exponential"] = "cosine",
        eta_min: float = 0.0,
        gamma: float = 0.97,
        label_smoothing: float = 0.0,
    ) -> None:
        """``eta_min``: final lr of the cosine schedule; ``gamma``: lr decay per epoch of the exponential one."""
        super().__init__()
        if network not in ("cifar", "imagenet"):
            raise ValueError(f"network must be 'cifar' or 'imagenet', got {network!r}")
        if scheduler not in ("cosine", "exponential"):
            raise ValueError(f"scheduler must be 'cosine' or 'exponential', got {scheduler!r}")
        self.genotype: Genotype = resolve_genotype(genotype)
        self.save_hyperparameters()
        self.hparams["genotype"] = self.genotype.to_dict()
        self.network = timm.create_model(
            f"nas_{network}",
            genotype=self.genotype,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_chans=in_chans,
            auxiliary=auxiliary_weight > 0,
        )
        self.train_accuracy = accuracy_metrics(num_classes, "train/")
        self.eval_accuracy = nn.ModuleDict({stage: accuracy_metrics(num_classes, f"{stage}/") for stage in EVAL_STAGES})
        self.eval_loss = nn.ModuleDict({stage: MeanMetric() for stage in EVAL_STAGES})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss (label-smoothed cross entropy + auxiliary weight x auxiliary loss) and the logits."""
        logits, aux_logits = self.network.forward_with_aux(x)
        smoothing = self.hparams.label_smoothing
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        if aux_logits is not None:
            loss = loss + self.hparams.auxiliary_weight * F.cross_entropy(aux_logits, y, label_smoothing=smoothing)
        return loss, logits

    def on_fit_start(self) -> None:
        if not self.trainer.max_epochs or self.trainer.max_epochs < 1:
            raise ValueError("final training schedules lr and drop path over the epochs: set trainer.max_epochs")

    def configure_callbacks(self) -> list[pl.Callback]:
        return [EpochSeeding()]

    def on_train_epoch_start(self) -> None:
        """Raise drop path linearly: ``drop_path_prob * epoch / max_epochs`` (EpochSeeding makes its draws resume
        exactly)."""
        self.network.set_drop_path_rate(self.hparams.drop_path_prob * self.current_epoch / self.trainer.max_epochs)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss, logits = self.loss(x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at global step {self.global_step} (epoch {self.current_epoch}); "
                f"lower the learning rate or set trainer.gradient_clip_val"
            )
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        self.log_dict(self.train_accuracy, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        """Plain cross entropy and accuracy, accumulated as metrics so that DDP ranks reduce them exactly."""
        x, y = batch
        logits = self(x)
        self.eval_loss[stage].update(F.cross_entropy(logits, y), weight=len(y))
        self.eval_accuracy[stage].update(logits, y)
        self.log(f"{stage}/loss", self.eval_loss[stage], prog_bar=True, batch_size=len(y))
        self.log_dict(self.eval_accuracy[stage], prog_bar=True, batch_size=len(y))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.nesterov
        )
        if hp.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.trainer.max_epochs, hp.eta_min)
        else:
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, hp.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
