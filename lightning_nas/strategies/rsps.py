"""Random search with parameter sharing (RSPS; Li & Talwalkar, UAI 2019) as a LightningModule.

Training: the shared weights take one SGD step per minibatch along one architecture drawn uniformly from the space
(one path of the space's shared child, ``SearchSpace.shared_child``), with DARTS's weight optimizer (momentum SGD,
cosine lr, grad-norm clip). Nothing else learns: there is no architecture parameter and no controller.

Derivation, once after training: ``eval_samples`` architectures drawn uniformly are each scored with the shared
weights on the same fixed held-out images (the first ``eval_batches`` batches of the data module's held-out split, in
order; all of them by default), and the best is the search's result, as ENAS's derivation picks its best. BN
normalises with each batch's own statistics (training mode, not recalibrated), as for ENAS's rewards: the running
statistics are a mixture over all the paths trained and fit no single one; they are restored after scoring
(``shared_weights.scoring``). Scoring every candidate on the same images makes their scores comparable, where one
minibatch per candidate would add the batches' differences to the architectures'.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from lightning_nas.arguments import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt
from lightning_nas.callbacks import EpochSeeding, GenotypeExport
from lightning_nas.errors import check
from lightning_nas.spaces import Architecture, SharedChild, create_space
from lightning_nas.strategies.cuda_graph import fused_sgd
from lightning_nas.strategies.finite import check_finite
from lightning_nas.strategies.shared_weights import Batch, draw_decisions, heldout_accuracy

Decisions = tuple[int, ...]


class RSPSHyperparameters(Protocol):
    """The types of the ``hparams`` RSPS reads."""

    lr: float
    lr_min: float
    momentum: float
    weight_decay: float
    grad_clip: float | None
    eval_samples: int
    eval_batches: int | None
    genotype_filename: str


class RSPS(pl.LightningModule):
    """Random search with parameter sharing on the shared child of a registered space that offers one (``nb201``,
    ``enas_micro``, ``enas_macro``: ``SearchSpace.shared_child``) of ``C`` channels and ``layers`` cells.

    ``genotype()`` is the best of the ``eval_samples`` uniformly drawn architectures by held-out accuracy on the
    shared weights, scored when the last training epoch ends (or when fit ends, if it stops earlier); a
    ``GenotypeExport`` writes it at the end of fit (``{"arch": "|op~0|+|...|"}`` for nb201). ``scores`` keeps every
    candidate with its score. ``channels_last``: the supernet's weights and inputs in channels_last memory format
    (about 1.5x faster on CPU for the nb201 supernet, the same results up to float rounding).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        space: str = "nb201",
        C: PositiveInt = 16,
        layers: PositiveInt = 15,
        lr: PositiveFloat = 0.025,
        lr_min: NonNegativeFloat = 0.001,
        momentum: Fraction = 0.9,
        weight_decay: NonNegativeFloat = 3e-4,
        grad_clip: PositiveFloat | None = 5.0,
        eval_samples: PositiveInt = 100,
        eval_batches: PositiveInt | None = None,
        channels_last: bool = True,
        genotype_filename: str = "genotype.json",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.search_space = create_space(space)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        child = self.search_space.shared_child(num_classes, in_chans, C=C, layers=layers)
        self.supernet = cast(torch.nn.Module, child)
        self.supernet.to(memory_format=self.memory_format)
        self._derived: Decisions | None = None
        self.scores: list[tuple[Decisions, float]] = []
        """Every candidate of the derivation with its held-out accuracy, in the order drawn."""

    @property
    def hp(self) -> RSPSHyperparameters:
        return cast(RSPSHyperparameters, self.hparams)

    def setup(self, stage: str) -> None:
        val_split = getattr(getattr(self.trainer, "datamodule", None), "val_split", 0)
        check(bool(val_split), f"data.val_split={val_split}: RSPS scores its candidates on held-out training images; "
                               "set --data.init_args.val_split to e.g. 2000")

    def forward(self, x: torch.Tensor, path: Decisions) -> torch.Tensor:
        """The supernet's logits along ``path`` (one option index per decision of the space)."""
        return cast(SharedChild, self.supernet)(x.contiguous(memory_format=self.memory_format), path=path)

    def sample_path(self) -> Decisions:
        """A uniformly drawn architecture's decisions, rank 0's on every rank."""
        return self.trainer.strategy.broadcast(draw_decisions(self.search_space), src=0)

    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> torch.Tensor:
        """One weight step along a path drawn for this batch (a search-mode batch: its weights half; the arch half is
        unused, the candidates are scored on held-out images); after the last epoch's last batch, the derivation."""
        x, y = batch["weights"] if isinstance(batch, dict) else batch
        logits = self(x, self.sample_path())
        loss = F.cross_entropy(logits, y)
        check_finite(self, "shared weights", {"train/loss": loss})  # before the step: the weights stay finite
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/top1", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the last epoch's last weight step: the derivation (logged as ``derive/best_top1`` and
        ``derive/mean_top1``, and so held by that epoch's checkpoint)."""
        epochs = self.trainer.max_epochs
        if epochs is None or self.current_epoch + 1 < epochs or batch_idx + 1 < self.trainer.num_training_batches:
            return
        self.derive()
        scores = [score for _, score in self.scores]
        self.log_dict({"derive/best_top1": max(scores), "derive/mean_top1": sum(scores) / len(scores)},
                      on_step=False, on_epoch=True)

    # --- derivation on the shared weights ----------------------------------------------------------------------

    @torch.no_grad()
    def accuracy(self, path: Decisions, batch: Batch) -> torch.Tensor:
        """The supernet's accuracy along ``path`` on one batch."""
        x, y = batch
        return (self(x, path).argmax(1) == y).float().mean()

    def candidates(self) -> list[Decisions]:
        """``eval_samples`` uniformly drawn architectures' decisions, rank 0's on every rank."""
        drawn = [draw_decisions(self.search_space) for _ in range(self.hp.eval_samples)]
        return self.trainer.strategy.broadcast(drawn, src=0)

    @torch.no_grad()
    def derive(self) -> Decisions:
        """Score each of the ``candidates`` on the same held-out images, keep the best."""
        candidates = self.candidates()
        accuracies = heldout_accuracy(self, self.supernet, candidates, self.accuracy, self.hp.eval_batches)
        self.scores = [(path, float(score)) for path, score in zip(candidates, accuracies)]
        best = int(accuracies.argmax())
        self._derived = candidates[best]
        self.print(f"random search with parameter sharing: the best of {len(candidates)} architectures scores "
                   f"{float(accuracies[best]):.3f} held-out top-1 on the shared weights (their mean "
                   f"{float(accuracies.mean()):.3f})")
        return self._derived

    def on_train_end(self) -> None:
        """A fit that stopped before its last epoch's end (max_steps, max_time) derives here, on every rank."""
        if self._derived is None:
            self.derive()

    def genotype(self) -> Architecture:
        """The best architecture of the derivation (derived now if there was none yet: at the end of fit on every
        rank, by ``on_train_end``)."""
        return self.search_space.decode(self.derive() if self._derived is None else self._derived)

    # --- optimiser and checkpoints -----------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        hp = self.hp
        optimizer = fused_sgd(cast(SharedChild, self.supernet).weight_parameters(), hp.lr, hp.momentum,
                              hp.weight_decay)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=hp.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: int | float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """The trainer's clipping if set, else the gradient norm clipped at ``grad_clip`` (DARTS's 5)."""
        clip = self.hp.grad_clip if gradient_clip_val is None else gradient_clip_val
        self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    def configure_callbacks(self) -> list[pl.Callback]:
        return [GenotypeExport(self.hp.genotype_filename, every_epoch=False), EpochSeeding()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rsps_derived"] = None if self._derived is None else list(self._derived)
        checkpoint["rsps_scores"] = [[list(path), score] for path, score in self.scores]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        derived = checkpoint.get("rsps_derived")
        self._derived = None if derived is None else tuple(derived)
        self.scores = [(tuple(path), float(score)) for path, score in checkpoint.get("rsps_scores", [])]
