"""ENAS (Pham et al., 2018) as a LightningModule: a shared-weight child trained on sampled architectures, and an LSTM
controller trained with REINFORCE to sample better ones.

Each epoch is the authors' loop: one pass of child training with a fresh architecture per minibatch, then the
controller phase: ``controller_steps`` Adam steps, each averaging ``controller_aggregate`` sampled architectures,
rewarded by the child's accuracy on one held-out minibatch plus ``entropy_weight`` x the sample's entropy, against a
moving-average baseline. Defaults per space are the authors' code values (see ``SPACE_DEFAULTS``).

Under DDP every rank trains the architecture sampled on rank 0 (broadcast), scores it on its own held-out batch and
uses the mean reward, so controller, baseline and child stay identical on all ranks; DDP averages the gradients.
DDP needs ``strategy: ddp_find_unused_parameters_true`` because each architecture uses a subset of the child.
"""

from __future__ import annotations

import io
import os
from typing import Any, Iterator, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.callbacks import EpochSeeding, GenotypeExport, GenotypeLogger, run_directory
from lightning_nas.files import write_atomic
from lightning_nas.genotypes import Genotype
from lightning_nas.spaces.enas_macro import MacroArchitecture, MacroNetwork
from lightning_nas.spaces.enas_micro import MicroArchitecture, MicroChild
from lightning_nas.strategies.enas_controller import ControllerSample, MacroController, MicroController
from lightning_nas.strategies.finite import check_finite

Space = Literal["micro", "macro"]
Architecture = MicroArchitecture | MacroArchitecture
Batch = tuple[torch.Tensor, torch.Tensor]

SPACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "micro": {"C": 20, "num_layers": 6, "tanh_constant": 1.1, "controller_lr": 0.0035, "controller_steps": 30,
              "controller_aggregate": 10},
    "macro": {"C": 36, "num_layers": 12, "tanh_constant": 1.5, "controller_lr": 0.001, "controller_steps": 50,
              "controller_aggregate": 20},
}
"""The authors' values for every argument left as None."""


class ENAS(pl.LightningModule):
    """ENAS search over the ``micro`` (cells) or ``macro`` (whole network) space.

    ``genotype()`` is the derived architecture: the best of ``derive_samples`` sampled architectures on one held-out
    batch, as a Genotype (micro, for the final training recipe) or a MacroArchitecture (macro, for MacroNetwork).
    """

    def __init__(
        self,
        space: Space = "micro",
        num_classes: int = 10,
        in_chans: int = 3,
        C: int | None = None,
        num_layers: int | None = None,
        num_nodes: int = 5,
        dropout: float = 0.1,
        lstm_size: int = 64,
        tanh_constant: float | None = None,
        op_tanh_reduce: float = 2.5,
        temperature: float | None = None,
        skip_target: float = 0.4,
        skip_weight: float = 0.8,
        lr: float = 0.05,
        lr_min: float = 5e-4,
        momentum: float = 0.9,
        weight_decay: float = 2e-4,
        T_0: int = 10,
        T_mult: int = 2,
        grad_clip: float = 5.0,
        controller_lr: float | None = None,
        controller_steps: int | None = None,
        controller_aggregate: int | None = None,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        derive_samples: int = 10,
        genotype_filename: str = "genotype.json",
    ) -> None:
        super().__init__()
        if space not in SPACE_DEFAULTS:
            raise ValueError(f"space must be 'micro' or 'macro', got {space!r}")
        defaults = SPACE_DEFAULTS[space]
        given = {"C": C, "num_layers": num_layers, "tanh_constant": tanh_constant, "controller_lr": controller_lr,
                 "controller_steps": controller_steps, "controller_aggregate": controller_aggregate}
        resolved = {key: defaults[key] if value is None else value for key, value in given.items()}
        self.save_hyperparameters()
        self.hparams.update(resolved)
        self.automatic_optimization = False
        hp = self.hparams
        if space == "micro":
            self.child: nn.Module = MicroChild(hp.C, hp.num_layers, num_nodes, num_classes, in_chans, dropout=dropout)
            self.controller: MicroController | MacroController = MicroController(
                num_nodes, lstm_size=lstm_size, tanh_constant=hp.tanh_constant, op_tanh_reduce=op_tanh_reduce,
                temperature=temperature)
        else:
            self.child = MacroNetwork(None, hp.C, hp.num_layers, num_classes, in_chans, dropout=dropout)
            self.controller = MacroController(hp.num_layers, lstm_size=lstm_size, tanh_constant=hp.tanh_constant,
                                              temperature=temperature, skip_target=skip_target)
        self.register_buffer("baseline", torch.zeros(()))
        self._derived: Architecture | None = None
        self.history: list[dict[str, float]] = []
        """Per epoch: mean reward, baseline and controller entropy of the controller phase (plotted at the end)."""

    # --- child -------------------------------------------------------------------------------------------------

    def sample_shared(self) -> ControllerSample:
        """A controller sample whose architecture is rank 0's on every rank (its log-probability recomputed)."""
        sample = self.controller.sample()
        arch = self.trainer.strategy.broadcast(sample.arch, src=0)
        return sample if arch == sample.arch else self.controller.log_prob(arch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        child_optimizer, _ = self.optimizers()
        x, y = batch
        with torch.no_grad():
            arch = self.sample_shared().arch
        logits = self.child(x, arch)
        loss = F.cross_entropy(logits, y)
        check_finite(self, "child training", {"train/loss": loss})
        child_optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(child_optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        child_optimizer.step()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/top1", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True, prog_bar=True)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.lr_schedulers().step()
            self.controller_phase()
        return loss

    # --- controller --------------------------------------------------------------------------------------------

    def heldout_batches(self) -> Iterator[Batch]:
        """Endless held-out minibatches for the rewards, in an order fixed by the epoch (under DDP the loader gives
        each rank its own share)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not getattr(datamodule, "val_split", 0):
            raise RuntimeError("ENAS rewards the controller on held-out images: use a NASDataModule with val_split > 0")
        loader = datamodule.heldout_dataloader()
        loader.sampler.set_epoch(self.current_epoch)
        while True:
            for x, y in loader:
                yield x.to(self.device), y.to(self.device)

    @torch.no_grad()
    def accuracy(self, arch: Architecture, batch: Batch) -> torch.Tensor:
        """The child's accuracy with ``arch`` on one batch, BN in training mode as in the authors' search child."""
        x, y = batch
        return (self.child(x, arch).argmax(1) == y).float().mean()

    def controller_phase(self) -> None:
        """REINFORCE with a moving-average baseline: loss = −log p · (R − b) (+ skip-KL for macro), per sample."""
        _, controller_optimizer = self.optimizers()
        hp = self.hparams
        batches = self.heldout_batches()
        rewards, entropies = [], []
        for _ in range(hp.controller_steps):
            controller_optimizer.zero_grad()
            loss = torch.zeros((), device=self.device)
            for _ in range(hp.controller_aggregate):
                sample = self.sample_shared()
                accuracy = self.trainer.strategy.reduce(self.accuracy(sample.arch, next(batches)), reduce_op="mean")
                reward = accuracy + hp.entropy_weight * sample.entropy.to(self.device)
                self.baseline.sub_((1 - hp.baseline_decay) * (self.baseline - reward))
                loss = loss - sample.log_prob * (reward - self.baseline) + hp.skip_weight * sample.skip_penalty
                rewards.append(float(reward))
                entropies.append(float(sample.entropy))
            check_finite(self, "controller phase", {"controller loss": loss}, hint="lower controller_lr")
            self.manual_backward(loss / hp.controller_aggregate)
            controller_optimizer.step()
        self._derived = self.derive(next(batches))
        self.history.append({"epoch": self.current_epoch, "reward": sum(rewards) / len(rewards),
                             "baseline": float(self.baseline), "entropy": sum(entropies) / len(entropies)})
        self.log_dict({f"controller/{key}": value for key, value in self.history[-1].items() if key != "epoch"},
                      on_step=False, on_epoch=True)
        self.print(f"\nepoch {self.current_epoch}: best architecture\n{self._derived}")

    # --- derivation --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def derive(self, batch: Batch) -> Architecture:
        """The best of ``derive_samples`` sampled architectures by accuracy on ``batch`` (no collectives)."""
        archs = [self.controller.sample().arch for _ in range(self.hparams.derive_samples)]
        return max(archs, key=lambda arch: float(self.accuracy(arch, batch)))

    def genotype(self) -> Genotype | MacroArchitecture:
        """The derived architecture of the last controller phase (derived now if there was none yet)."""
        if self._derived is None:
            self._derived = self.derive(next(self.heldout_batches()))
        return self._derived.to_genotype() if isinstance(self._derived, MicroArchitecture) else self._derived

    # --- optimisers and checkpoints ----------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        child = torch.optim.SGD(self.child.parameters(), lr=hp.lr, momentum=hp.momentum, nesterov=True,
                                weight_decay=hp.weight_decay)
        # The authors' Adam: beta1 = 0, epsilon = 1e-3.
        controller = torch.optim.Adam(self.controller.parameters(), lr=hp.controller_lr, betas=(0.0, 0.999), eps=1e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(child, T_0=hp.T_0, T_mult=hp.T_mult,
                                                                        eta_min=hp.lr_min)
        return [child, controller], [schedule]

    def configure_callbacks(self) -> list[pl.Callback]:
        return [GenotypeExport(self.hparams.genotype_filename), GenotypeLogger(), EpochSeeding()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["enas_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("enas_history", []))

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero and self.history:
            plot_controller_curves(self.history, run_directory(self.trainer) / "plots" / "enas_curves.png")


def plot_controller_curves(history: list[dict[str, float]], path: str | os.PathLike) -> None:
    """Mean reward (with the baseline) and controller entropy per epoch, side by side, written atomically as PNG."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.5))
    reward_axis, entropy_axis = figure.subplots(1, 2)
    reward_axis.plot(epochs, [row["reward"] for row in history], marker="o", label="mean reward")
    reward_axis.plot(epochs, [row["baseline"] for row in history], linestyle="--", label="baseline")
    reward_axis.set(xlabel="epoch", ylabel="reward", title="controller reward")
    reward_axis.legend()
    entropy_axis.plot(epochs, [row["entropy"] for row in history], marker="o", color="tab:red")
    entropy_axis.set(xlabel="epoch", ylabel="entropy (nats)", title="controller entropy")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    write_atomic(path, buffer.getvalue())
