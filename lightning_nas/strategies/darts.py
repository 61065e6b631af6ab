"""DARTS search as a LightningModule: alternating architecture (α) and weight (w) steps on the supernet.

Each training step reads a search-mode batch ``{"weights": (x, y), "arch": (x, y)}``: first an α step (Adam) on the
architecture batch, then a w step (SGD, cosine lr, grad-norm clip) on the weight batch. First order uses ∇α L_val(w, α);
second order (``unrolled=True``) differentiates through one virtual weight step (``unrolled_arch_gradient``).
Every backward pass goes through ``manual_backward`` so DDP averages α and w gradients across ranks.
"""

from __future__ import annotations

from typing import Callable, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.callbacks import EpochSeeding, GenotypeExport, GenotypeLogger
from lightning_nas.genotypes import Genotype
from lightning_nas.ops import DARTS_PRIMITIVES
from lightning_nas.spaces.darts import SearchNetwork

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[Batch], torch.Tensor]


def unrolled_arch_gradient(
    network: SearchNetwork,
    loss_fn: LossFn,
    weights_batch: Batch,
    arch_batch: Batch,
    xi: float,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    mean_across_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> None:
    """Set ``α.grad`` to the second-order DARTS gradient of L_val(w', α) with w' = w − ξ ∇w L_train(w, α):

        ∇α L_val(w', α) − ξ (∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / (2ε),
        w± = w ± ε ∇w' L_val(w', α),  ε = 0.01 / ‖∇w' L_val(w', α)‖.

    ``backward`` computes the gradients of L_train(w) and L_val(w') (DDP averages them under Lightning); the finite-
    difference Hessian-vector term is computed locally and averaged by ``mean_across_ranks``. The weights are
    restored exactly; ``w.grad`` is left holding ∇w' L_val and must be cleared before the weight step.
    """
    weights, alphas = network.weight_parameters(), network.arch_parameters()
    original = [w.detach().clone() for w in weights]

    def zero_grad() -> None:
        for p in [*weights, *alphas]:
            p.grad = None

    zero_grad()
    backward(loss_fn(weights_batch))
    with torch.no_grad():  # w' = w − ξ ∇w L_train(w, α)
        for w in weights:
            if w.grad is not None:
                w.sub_(xi * w.grad)
    zero_grad()
    backward(loss_fn(arch_batch))
    direct = [a.grad.detach().clone() for a in alphas]
    v = [torch.zeros_like(w) if w.grad is None else w.grad.detach().clone() for w in weights]
    epsilon = 0.01 / torch.cat([g.flatten() for g in v]).norm()

    def arch_gradient_at(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            for w, w0, g in zip(weights, original, v):
                w.copy_(w0 + sign * epsilon * g)
        return list(torch.autograd.grad(loss_fn(weights_batch), alphas))

    plus, minus = arch_gradient_at(1.0), arch_gradient_at(-1.0)
    with torch.no_grad():
        for w, w0 in zip(weights, original):
            w.copy_(w0)
        for a, d, gp, gm in zip(alphas, direct, plus, minus):
            a.grad = d - xi * mean_across_ranks((gp - gm) / (2 * epsilon))


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of softmax(α) over the edges: log(#ops) at the start, 0 once every edge is decided."""
    log_p = F.log_softmax(alpha.detach(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1).mean()


class DARTS(pl.LightningModule):
    """DARTS search (Liu et al., 2019) on a ``SearchNetwork``, first or second order (``unrolled``).

    ``genotype()`` derives the current architecture at any time; a ``GenotypeExport`` callback writes it next to the
    checkpoints every epoch and at the end. Both optimizers and the weight lr schedule live in the checkpoint; with
    the data module's (seed, epoch) shuffling and ``EpochSeeding``, a resumed search continues exactly.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        C: int = 16,
        layers: int = 8,
        nodes: int = 4,
        stem_multiplier: int = 3,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        unrolled: bool = False,
        partial_channels: int = 1,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        w_grad_clip: float = 5.0,
        arch_lr: float = 3e-4,
        arch_betas: tuple[float, float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        channels_last: bool = True,
        genotype_filename: str = "genotype.json",
    ) -> None:
        """``partial_channels``: K of PC-DARTS (1/K of the channels through each mixed op, edge normalisation; 1 is
        DARTS). ``channels_last``: the supernet's weights and inputs in channels_last memory format, about 1.5x
        faster on CPU (depthwise convs and pooling) with the same results up to float rounding."""
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.network = SearchNetwork(
            C, layers, num_classes, in_chans, nodes, stem_multiplier, primitives, partial_channels
        )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network.to(memory_format=self.memory_format)
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_loss = MeanMetric()

    def forward(self, x: torch.Tensor, alpha_grad: bool = True) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=self.memory_format), alpha_grad)

    def genotype(self) -> Genotype:
        return self.network.genotype()

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.network.primitives

    def alpha_weights(self) -> dict[str, torch.Tensor]:
        """softmax(α) per cell type, for the GenotypeLogger's heat maps."""
        return dict(zip(("normal", "reduce"), self.network.op_weights()))

    def loss(self, batch: Batch, alpha_grad: bool = True) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x, alpha_grad), y)

    @property
    def skip_unused_gradients(self) -> bool:
        """Whether the α step may skip the weight gradients and the w step the α gradients (about a third of each
        backward pass). Not under DDP: its reducer expects every parameter's gradient in every backward pass."""
        return self.trainer.world_size == 1

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        if not isinstance(batch, dict) or set(batch) != {"weights", "arch"}:
            raise ValueError("DARTS needs search-mode batches {'weights': (x, y), 'arch': (x, y)}: set data.mode=search")
        w_optimizer, arch_optimizer = self.optimizers()

        # α step on the architecture batch
        arch_optimizer.zero_grad()
        if self.hparams.unrolled:
            xi = w_optimizer.param_groups[0]["lr"]
            unrolled_arch_gradient(
                self.network, self.loss, batch["weights"], batch["arch"], xi, self.manual_backward, self._mean_across_ranks
            )
        else:
            arch_only = self.network.arch_parameters() if self.skip_unused_gradients else None
            self.manual_backward(self.loss(batch["arch"]), inputs=arch_only)
        arch_optimizer.step()

        # w step on the weight batch
        w_optimizer.zero_grad()
        loss = self.loss(batch["weights"], alpha_grad=not self.skip_unused_gradients)
        self.manual_backward(loss)
        self.clip_gradients(w_optimizer, gradient_clip_val=self.hparams.w_grad_clip, gradient_clip_algorithm="norm")
        w_optimizer.step()
        self.log("train/loss", loss, prog_bar=True)

    def _mean_across_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(tensor, reduce_op="mean") if self.trainer.world_size > 1 else tensor

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        # metrics, not per-step sync_dist: under DDP ranks may run one validation batch more or less
        self.val_top1.update(logits, y)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/top1", self.val_top1, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()
        self.log("arch/entropy_normal", alpha_entropy(self.network.alpha_normal))
        self.log("arch/entropy_reduce", alpha_entropy(self.network.alpha_reduce))
        rank_zero_info(f"\nEpoch {self.current_epoch} genotype:\n{self.genotype()}")

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LRScheduler]]:
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ValueError(f"DARTS anneals the weight lr over trainer.max_epochs; set it (got {max_epochs})")
        hp = self.hparams
        w_optimizer = torch.optim.SGD(
            self.network.weight_parameters(), hp.w_lr, momentum=hp.w_momentum, weight_decay=hp.w_weight_decay
        )
        arch_optimizer = torch.optim.Adam(
            self.network.arch_parameters(), hp.arch_lr, betas=tuple(hp.arch_betas), weight_decay=hp.arch_weight_decay
        )
        w_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(w_optimizer, max_epochs, eta_min=hp.w_lr_min)
        return [w_optimizer, arch_optimizer], [w_schedule]

    def configure_callbacks(self) -> list[pl.Callback]:
        return [GenotypeExport(self.hparams.genotype_filename), GenotypeLogger(), EpochSeeding()]
