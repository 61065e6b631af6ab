"""Final training: a network stacked from a found genotype, trained from scratch with the papers' evaluation tricks.

DARTS (and ENAS, PNAS after it) retrain the found cell in a larger network with an auxiliary head (loss weight 0.4),
drop path whose probability rises linearly with the epoch, SGD with cosine (CIFAR-10) or per-epoch exponential
(ImageNet) decay, and label smoothing on ImageNet. Gradient clipping belongs to the Trainer
(``gradient_clip_val``); an EMA of the weights to Lightning's ``EMAWeightAveraging`` callback, which also validates,
tests and checkpoints with the averaged weights.

Any registered search space's architecture trains here (``space``). The DARTS-style cells of ``darts`` (the default),
``enas_micro`` and ``pnas`` stack into the published networks above, with every trick; the architectures of the other
spaces (a NAS-Bench-201 cell, an ENAS macro network) train in the network their space builds, ``space.build`` of
``C`` channels, ``layers // 3`` cells per stage and ``network_options`` (``SearchSpace.sized``), which has no
auxiliary head (and, in the shipped spaces, no drop path): those are refused in one line rather than silently left
out.

``FinalTraining.load_from_checkpoint(path).timm_model()`` takes the trained network out as a plain timm model, with
the training data's mean, std and input size in its ``pretrained_cfg`` (docs/export.md).
"""

import json
import math
import os
import warnings
from typing import Any, Callable, Literal, cast

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.arguments import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Rate
from lightning_nas.callbacks import EpochSeeding
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import read_text
from lightning_nas.genotypes import published_genotypes, resolve_genotype
from lightning_nas.networks import StackedCellNetwork
from lightning_nas.spaces import Architecture, GenotypeSpace, SearchSpace, create_space, space_options
from lightning_nas.strategies.cuda_graph import GraphedStep, check_graphable, fused_sgd, lr_tensors_to
from lightning_nas.strategies.finite import check_finite, module_state, nonfinite_on_any_rank, skip_step_if

EVAL_STAGES = ("val", "test")


def top_ks(num_classes: int) -> tuple[int, ...]:
    """Top-1 accuracy, and top-5 when there are more than 5 classes."""
    return (1, 5) if num_classes > 5 else (1,)


def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    metrics: dict[str, Metric | MetricCollection] = {
        f"top{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in top_ks(num_classes)
    }
    return MetricCollection(metrics, prefix=prefix)


def top_k_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The fraction of the batch whose label is among the ``k`` highest logits, computed on the device (torchmetrics'
    input checks and one-hot encoding read values on the host)."""
    return (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).float().mean()


def resolve_architecture(space: SearchSpace, value: str | dict[str, Any]) -> Architecture:
    """An architecture of ``space`` from its text form (``space.from_string``: NB201's ``|op~0|+|...|``), a dict of
    its JSON form (from a config), or a file holding its JSON form (the ``genotype.json`` a search writes)."""
    if isinstance(value, dict):
        return space.from_json(json.dumps(value))
    text = os.fspath(value)
    try:
        return space.from_string(text)
    except (ValueError, TypeError) as error:  # ConfigError is a ValueError
        parse_error = error
    try:
        content = read_text(text)
    except (OSError, ValueError):
        content = None
    if content is None and text in published_genotypes():
        raise ConfigError(f"genotype {text!r} is a published DARTS-style cell, not an architecture of the {space.name} "
                          f"space: give the {space.name} space's text form or the genotype.json its search wrote")
    if content is None and text.endswith((".json", ".yaml", ".yml")):
        raise ConfigError(f"genotype file {text!r} does not exist")
    if content is None:
        raise ConfigError(f"genotype {text!r} is neither a file nor an architecture of the {space.name} space: "
                          f"{parse_error}")
    try:
        return space.from_json(content)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{text}: not an architecture of the {space.name} space: {error}") from None


def cells_per_stage(layers: int, space: str) -> int:
    """The ``N`` of ``space.build``: its networks have 3 stages of N cells (or layers), so ``layers // 3``."""
    check(layers >= 3, f"layers={layers}: the {space} network has 3 stages of layers // 3 cells; give at least 3")
    return layers // 3


class FinalTraining(pl.LightningModule):
    """Train an architecture of a registered search space from scratch. ``space``'s DARTS-style cells (``darts``,
    ``enas_micro``, ``pnas``: ``genotype`` a published name, a genotype file written by a search, or a dict) stack into
    ``nas_cifar`` or ``nas_imagenet``; any other space's architecture (its text form, a dict, or the file a search
    wrote) trains in ``space.build`` (``C``, ``N=layers // 3``, ``network_options``). The architecture is kept in the
    hyperparameters as a plain dict, so a checkpoint rebuilds the exact network and loads with
    ``weights_only=True``."""

    def __init__(
        self,
        genotype: str | dict[str, Any] = "DARTS_V2",
        space: str = "darts",
        network: Literal["cifar", "imagenet"] = "cifar",
        C: PositiveInt = 36,
        layers: PositiveInt = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        auxiliary_weight: NonNegativeFloat = 0.4,
        drop_path_prob: Fraction = 0.2,
        lr: PositiveFloat = 0.025,
        momentum: Fraction = 0.9,
        weight_decay: NonNegativeFloat = 3e-4,
        nesterov: bool = False,
        scheduler: Literal["cosine", "exponential"] = "cosine",
        eta_min: NonNegativeFloat = 0.0,
        gamma: Rate = 0.97,
        label_smoothing: Fraction = 0.0,
        cuda_graph: bool = False,
        network_options: dict[str, Any] | None = None,
        nodes: PositiveInt | None = None,
        ops: list[str] | None = None,
    ) -> None:
        """``space``: the registered search space ``genotype`` belongs to (``create_space``). ``network``, ``C`` and
        ``layers`` shape a DARTS-style cell's network; for another space, ``C`` is the width of ``space.build``'s first
        stage and ``layers`` its cells in all, 3 stages of ``layers // 3`` (NB201: C=16, layers=15 is the benchmark's
        network; an ENAS macro architecture fixes its own depth and ignores ``layers``), and ``network`` must stay
        ``cifar``, ``auxiliary_weight`` 0 and ``drop_path_prob`` 0 unless that network has ``set_drop_path_rate``;
        ``network_options`` are that network's other options (those of its ``build`` besides ``C`` and ``N``).
        ``nodes`` and ``ops`` are the space's options, as the search that found the architecture had them (the
        architecture is checked against them when given).
        ``eta_min``: final lr of the cosine schedule; ``gamma``: lr decay per epoch of the exponential one.
        ``cuda_graph``: replay each training step (forward, backward, the Trainer's gradient clipping, update) as one
        CUDA graph (``cuda_graph.GraphedStep``), captured anew each epoch after 3 eager steps, since drop path's
        probability changes per epoch; on one CUDA device. Its training logs are then written after each step
        (``on_train_batch_end``), and callbacks' backward and optimizer-step hooks run at capture only."""
        super().__init__()
        check(network in ("cifar", "imagenet"), f"network must be 'cifar' or 'imagenet', got {network!r}")
        check(scheduler in ("cosine", "exponential"), f"scheduler must be 'cosine' or 'exponential', got {scheduler!r}")
        self.search_space = create_space(space, **space_options(nodes, ops))
        self.network: nn.Module
        if isinstance(self.search_space, GenotypeSpace):
            check(not network_options, f"network_options={network_options} are for a space's own network; the {space} "
                                       f"space's cells stack into nas_{network}: leave network_options out")
            check(network == "cifar" or C % 2 == 0,
                  f"the imagenet network halves C in its stem: C must be even, got {C}; try {C + 1}")
            self.genotype: Architecture = resolve_genotype(genotype)
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
        else:
            check(network == "cifar", f"network={network!r} stacks DARTS-style cells; the {space} space builds its own "
                                      f"network: leave network at 'cifar'")
            self.genotype = resolve_architecture(self.search_space, genotype)
            if nodes is not None or ops is not None:  # within the options given, or one line naming what is not
                self.search_space.decisions(self.genotype)
            self.save_hyperparameters()
            self.hparams["genotype"] = json.loads(self.search_space.to_json(self.genotype))
            size = self.search_space.sized(C, cells_per_stage(layers, space), **(network_options or {}))
            self.network = self.search_space.build(self.genotype, num_classes, in_chans, **size)
            missing = {"auxiliary_weight": "auxiliary head"} if auxiliary_weight > 0 else {}  # build takes no aux
            if drop_path_prob > 0 and not hasattr(self.network, "set_drop_path_rate"):
                missing["drop_path_prob"] = "drop path"
            check(not missing, f"the {space} space's network ({type(self.network).__name__}) has no "
                               f"{' and no '.join(missing.values())}: set {' and '.join(f'{k}=0' for k in missing)}")
        self.eval_accuracy = nn.ModuleDict({stage: accuracy_metrics(num_classes, f"{stage}/") for stage in EVAL_STAGES})
        self.eval_loss = nn.ModuleDict({stage: MeanMetric() for stage in EVAL_STAGES})
        self.data_config: dict[str, tuple[Any, ...]] | None = None
        """Input size, mean and std of the data module the network was trained on; kept in the checkpoint."""
        self._outputs: dict[str, torch.Tensor] = {}
        """The last training step's loss and accuracies (a graph's static outputs), checked and logged after it."""
        self._graph: GraphedStep | None = None
        """With ``cuda_graph``: this epoch's graph of the training step."""
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        """With ``cuda_graph``: the static batch the graph reads, each batch copied into it."""
        self._eager_step: Callable[[], Any] = lambda: None
        """With ``cuda_graph``: Lightning's optimizer step of this batch, for the graph's warm-up and capture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss (label-smoothed cross entropy + auxiliary weight x auxiliary loss) and the logits."""
        if isinstance(self.network, StackedCellNetwork):
            logits, aux_logits = self.network.forward_with_aux(x)
        else:  # a space's own network: no auxiliary head (__init__ refused auxiliary_weight > 0)
            logits, aux_logits = self.network(x), None
        smoothing = self.hparams["label_smoothing"]
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        if aux_logits is not None:
            loss = loss + self.hparams["auxiliary_weight"] * F.cross_entropy(aux_logits, y, label_smoothing=smoothing)
        return loss, logits

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if all(hasattr(datamodule, key) for key in ("input_size", "mean", "std")):
            self.data_config = {key: tuple(getattr(datamodule, key)) for key in ("input_size", "mean", "std")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["data_config"] = self.data_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_config = checkpoint.get("data_config")

    def timm_model(self) -> nn.Module:
        """The trained network as a plain timm model in eval mode: ``timm.create_model`` with the genotype (as a dict,
        so ``timm.models.save_for_hf`` can write it) and the trained weights, without the auxiliary head; its
        pretrained_cfg holds the training data's input size, mean and std. Another space's network comes back as
        its ``space.build`` with the trained weights (``data_config`` holds the data's input size, mean and std)."""
        hp = self.hparams
        if not isinstance(self.network, StackedCellNetwork):
            size = self.search_space.sized(hp["C"], cells_per_stage(hp["layers"], hp["space"]),
                                           **(hp.get("network_options") or {}))
            model = self.search_space.build(self.genotype, hp["num_classes"], hp["in_chans"], **size)
            model.load_state_dict(self.network.state_dict())
            return model.eval()
        overlay: dict[str, Any] = {"num_classes": hp["num_classes"]}
        if self.data_config is not None:
            _, height, width = self.data_config["input_size"]
            reduction = self.network.feature_info[-1]["reduction"]
            overlay |= self.data_config | {"pool_size": (math.ceil(height / reduction), math.ceil(width / reduction))}
        model = cast(StackedCellNetwork, timm.create_model(
            f"nas_{hp['network']}", genotype=self.genotype.to_dict(), C=hp["C"], layers=hp["layers"],
            num_classes=hp["num_classes"], in_chans=hp["in_chans"], pretrained_cfg_overlay=overlay,
        ))
        weights = {k: v for k, v in self.network.state_dict().items() if not k.startswith("aux_head.")}
        model.load_state_dict(weights)
        return model.eval()

    def on_fit_start(self) -> None:
        max_epochs = self.trainer.max_epochs
        check(max_epochs is not None and max_epochs >= 1,
              f"final training schedules lr and drop path over the epochs: set trainer.max_epochs, got {max_epochs}")
        if self.hparams["cuda_graph"]:  # a replayed step's training_step returns None on purpose (see there)
            check_graphable(self, "training step")
            warnings.filterwarnings("ignore", message="`training_step` returned `None`")

    def configure_callbacks(self) -> list[pl.Callback]:
        return [EpochSeeding()]

    def on_train_start(self) -> None:
        lr_tensors_to(self.trainer.optimizers, self.device)  # after a resume's load (its lrs come back on the CPU)

    def on_train_epoch_start(self) -> None:
        """Raise drop path linearly: ``drop_path_prob * epoch / max_epochs`` (EpochSeeding makes its draws resume
        exactly)."""
        max_epochs = self.trainer.max_epochs or 1  # on_fit_start checked it
        set_drop_path_rate = getattr(self.network, "set_drop_path_rate", None)  # absent: __init__ checked the prob is 0
        if set_drop_path_rate is not None:
            set_drop_path_rate(self.hparams["drop_path_prob"] * self.current_epoch / max_epochs)
        if self.hparams["cuda_graph"]:
            self._graph = None  # the last epoch's graph (and its memory) goes before this one captures
            self._graph = GraphedStep(lambda: self._eager_step())

    def on_train_batch_start(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """With ``cuda_graph``: the batch into the static inputs, before the step is captured or replayed (a batch of
        another shape gets inputs and a graph of its own)."""
        if self._graph is None:
            return
        if self._inputs is None or [t.shape for t in self._inputs] != [t.shape for t in batch]:
            self._inputs = batch[0].clone(), batch[1].clone()
            self._graph = GraphedStep(lambda: self._eager_step())
        for static, t in zip(self._inputs, batch):
            static.copy_(t)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        """Reads nothing on the host: a non-finite loss makes the fused optimizer skip the update on the device, and
        ``optimizer_step`` raises after it. With ``cuda_graph`` the step reads the static inputs, and once captured
        this replays the whole step and returns None, leaving Lightning nothing to back-propagate or update."""
        if self._graph is not None and self._graph.graph is not None:
            self._graph()
            return None
        x, y = batch if self._inputs is None else self._inputs
        loss, logits = self.loss(x, y)
        skip_step_if(cast(LightningOptimizer, self.optimizers()), nonfinite_on_any_rank(self, loss))
        accuracies = {f"train/top{k}": top_k_accuracy(logits, y, k) for k in top_ks(self.hparams["num_classes"])}
        self._outputs = {"train/loss": loss.detach(), **accuracies}
        if self._graph is None:  # a graph's step is logged after it (its Python runs once, at capture)
            self._log_training(len(y))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self._graph is not None:
            self._log_training(len(batch[1]))

    def _log_training(self, batch_size: int) -> None:
        for name, value in self._outputs.items():
            if name == "train/loss":
                self.log(name, value, prog_bar=True, batch_size=batch_size)
            else:
                self.log(name, value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Callable[[], Any] | None = None
    ) -> None:
        """The step (training_step, backward, clipping, update), then the check of its loss: a non-finite one stops
        the run here, before any callback or checkpoint sees the step it skipped. With ``cuda_graph``, Lightning's
        whole step is the graph's warm-up or capture; once captured, the closure's training_step replays it."""
        if self._graph is None:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        elif self._graph.graph is not None and optimizer_closure is not None:
            optimizer_closure()
        else:
            self._eager_step = lambda: super(FinalTraining, self).optimizer_step(
                epoch, batch_idx, optimizer, optimizer_closure)
            self._graph()
        check_finite(self, "training", {"train/loss": self._outputs["train/loss"]})

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        """Plain cross entropy and accuracy, accumulated as metrics so that DDP ranks reduce them exactly."""
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        check_finite(self, "validation" if stage == "val" else stage, {f"{stage}/loss": loss})  # MeanMetric drops NaN
        mean_loss, accuracy = cast(MeanMetric, self.eval_loss[stage]), cast(MetricCollection, self.eval_accuracy[stage])
        mean_loss.update(loss, weight=len(y))
        accuracy.update(logits, y)
        self.log(f"{stage}/loss", mean_loss, prog_bar=True, batch_size=len(y))
        self.log_dict(accuracy, prog_bar=True, batch_size=len(y))

    def on_train_epoch_end(self) -> None:
        """Before ModelCheckpoint saves an epoch without validation: no non-finite weight or BN statistic."""
        check_finite(self, "training epoch end", module_state(self))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Before ModelCheckpoint saves after validation: no non-finite weight or BN statistic (the losses can stay
        finite while a BN running variance overflows)."""
        check_finite(self, "validation", module_state(self))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class probabilities of the images (labels, when the batch has them, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=1)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self.hparams
        lr = torch.tensor(hp["lr"], device=self.device)  # a tensor the schedule writes into, for CUDA graphs
        optimizer = fused_sgd(self.parameters(), lr, hp["momentum"], hp["weight_decay"], hp["nesterov"])
        scheduler: LRScheduler
        if hp["scheduler"] == "cosine":
            scheduler = CosineAnnealingLR(optimizer, self.trainer.max_epochs or 1, hp["eta_min"])
        else:
            scheduler = ExponentialLR(optimizer, hp["gamma"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
