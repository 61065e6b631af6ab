"""ENAS (Pham et al., 2018) as a LightningModule: a shared-weight child trained on sampled architectures, and an LSTM
controller trained with REINFORCE to sample better ones.

The spaces: any registered space that offers a shared child (``SearchSpace.shared_child``, ``spaces.SharedChild``):
the authors' ``enas_micro`` (cells) and ``enas_macro`` (whole network), searched with the authors' controllers and
values (``AUTHORS``), or another (``nb201``: its supernet run along one cell's path), whose decisions
``DecisionController`` samples one by one. The child always runs along the space's decisions, which the space decodes
into the architecture written out.

Each epoch is the authors' loop: one pass of child training with a fresh architecture per minibatch, then the
controller phase: ``controller_steps`` Adam steps, each averaging ``controller_aggregate`` sampled architectures,
rewarded by the child's accuracy on one held-out minibatch plus ``entropy_weight`` x the sample's entropy, against a
moving-average baseline. Defaults per space are the authors' code values (see ``SPACE_DEFAULTS``).

Derivation: the best of ``derive_samples`` controller samples by accuracy on the same fixed held-out images
(``derive_batches`` ordered batches, all by default), deterministic given the seed. ``derive_batches=1`` is the
authors' one-batch rule, whose noise on 64 images (±0.05) exceeds most differences between architectures.
``compare_with_uniform`` scores controller samples against uniform ones the same way: whether the controller
learned anything the shared weights can tell apart.

Where this differs from the authors' code:
- the micro cell output concatenates only the computed nodes no node reads; theirs also concatenates unused cell
  inputs, which a Genotype cannot express (see ``spaces.enas_micro``);
- BN inside the shared ops is non-affine (as in DARTS's supernet), where theirs learns a scale and shift;
- the child's gradient norm is clipped at ``grad_clip`` (5), where the authors' clip has no effect in their
  released code; ``grad_clip=None`` turns it off.

Under DDP every rank trains the architecture sampled on rank 0 (broadcast), scores it on its own held-out batch and
uses the mean reward, so controller, baseline and child stay identical on all ranks; DDP averages the gradients.
DDP needs ``strategy: ddp_find_unused_parameters_true`` because each architecture uses a subset of the child (the ENAS
recipe picks it when asked for ``ddp``).
"""

import dataclasses
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator, Protocol, Sequence, cast

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer

from lightning_nas.arguments import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning_nas.callbacks import EpochSeeding, GenotypeExport, GenotypeLogger
from lightning_nas.data import NASDataModule
from lightning_nas.data.base import EpochSampler
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import join, write_atomic
from lightning_nas.plots import controller_curves_png
from lightning_nas.plugins import is_import_path
from lightning_nas.run_folder import run_directory
from lightning_nas.spaces import SPACES, SearchSpace, SharedChild, create_space, spaces_offering
from lightning_nas.spaces.enas_macro import ENASMacroSpace
from lightning_nas.spaces.enas_micro import ENASMicroSpace
from lightning_nas.strategies.enas_controller import (ControllerSample, DecisionController, LSTMController,
                                                      MacroController, MicroController)
from lightning_nas.strategies.cuda_graph import fused_sgd
from lightning_nas.strategies.finite import check_finite, nonfinite_on_any_rank, skip_step_if
from lightning_nas.strategies.shared_weights import draw_decisions, heldout_accuracy, scoring

Space = str
"""A registered space that offers a shared child (``enas_micro``, ``enas_macro``, ``nb201``), or an alias."""
Architecture = tuple[int, ...]
"""An architecture as its space's decisions (one option index per decision): what the child runs along."""
Batch = tuple[torch.Tensor, torch.Tensor]

ALIASES = {"micro": "enas_micro", "macro": "enas_macro"}
"""The authors' spaces by the names ENAS gave them before they were registered (older configs and checkpoints)."""

MIN_LAYERS = 3
"""The fewest layers of an ENAS child: its reduction layers (or cells) sit 1/3 and 2/3 deep."""


class ENASHyperparameters(Protocol):
    """The types of the ``hparams`` ENAS reads, with the None defaults resolved from the space's ``SpaceSearch``."""

    space: Space
    C: int
    num_layers: int
    num_nodes: int
    dropout: float | None
    lstm_size: int
    tanh_constant: float
    op_tanh_reduce: float
    op_bias: tuple[float, ...]
    temperature: float | None
    skip_target: float
    lr: float
    lr_min: float
    momentum: float
    weight_decay: float
    T_0: int
    T_mult: int
    grad_clip: float | None
    controller_lr: float
    controller_steps: int
    controller_aggregate: int
    entropy_weight: float
    baseline_decay: float
    skip_weight: float
    derive_samples: int
    derive_batches: int | None
    compare_samples: int
    genotype_filename: str


def micro_controller(space: SearchSpace, hp: ENASHyperparameters) -> LSTMController:
    """The authors' micro controller over the space's nodes and ops."""
    micro = cast(ENASMicroSpace, space)
    return MicroController(micro.nodes, micro.ops, lstm_size=hp.lstm_size, tanh_constant=hp.tanh_constant,
                           op_tanh_reduce=hp.op_tanh_reduce, temperature=hp.temperature, op_bias=hp.op_bias)


def macro_controller(space: SearchSpace, hp: ENASHyperparameters) -> LSTMController:
    """The authors' macro controller over the space's layers, with its skip-KL target."""
    return MacroController(cast(ENASMacroSpace, space).layers, lstm_size=hp.lstm_size, tanh_constant=hp.tanh_constant,
                           temperature=hp.temperature, skip_target=hp.skip_target)


def decision_controller(space: SearchSpace, hp: ENASHyperparameters) -> LSTMController:
    """One LSTM step per decision of the space (NAS-Bench-201's ENAS baseline)."""
    return DecisionController(space.choices(), lstm_size=hp.lstm_size, tanh_constant=hp.tanh_constant,
                              temperature=hp.temperature)


@dataclasses.dataclass(frozen=True)
class SpaceSearch:
    """How ENAS searches one space: the values of the arguments left None, the controller, and the space's options
    that ENAS's arguments set (option -> argument)."""

    defaults: dict[str, Any]
    controller: Callable[[SearchSpace, ENASHyperparameters], LSTMController]
    space_options: dict[str, str] = dataclasses.field(default_factory=dict)


AUTHORS: dict[str, SpaceSearch] = {
    "enas_micro": SpaceSearch({"C": 20, "num_layers": 6, "tanh_constant": 1.1, "temperature": None,
                               "controller_lr": 0.0035, "controller_steps": 30, "controller_aggregate": 10},
                              micro_controller, {"nodes": "num_nodes"}),
    "enas_macro": SpaceSearch({"C": 36, "num_layers": 12, "tanh_constant": 1.5, "temperature": None,
                               "controller_lr": 0.001, "controller_steps": 50, "controller_aggregate": 20},
                              macro_controller, {"layers": "num_layers"}),
}
"""The authors' searches of their two spaces, with their code's values."""
DECISIONS = SpaceSearch({"C": 16, "num_layers": 15, "tanh_constant": 2.5, "temperature": 5.0, "controller_lr": 0.001,
                         "controller_steps": 50, "controller_aggregate": 20}, decision_controller)
"""The search of any other space: NAS-Bench-201's ENAS baseline (its network, C=16 and 5 cells per stage; its
controller's tanh constant and temperature; the authors' macro controller's lr, steps and aggregate, which it
kept)."""


class ENAS(pl.LightningModule):
    """ENAS search over a registered space that offers a shared child: ``enas_micro`` (cells, the default),
    ``enas_macro`` (whole network), ``nb201`` or any other (``micro`` and ``macro`` name the first two too).

    ``genotype()`` is the derived architecture of the last controller phase: the best of ``derive_samples``
    controller samples by held-out accuracy on the shared weights (ENAS's derivation, not the controller's argmax),
    as the space decodes it: a Genotype (enas_micro, for the final training recipe), a MacroArchitecture
    (enas_macro, for MacroNetwork) or another space's architecture (an NB201Architecture, written
    ``{"arch": "|op~0|+|...|"}``).

    The child is the space's ``shared_child`` with ``C`` channels and ``num_layers`` cells or layers (``nb201``: three
    stages of num_layers // 3), trained along the sampled decisions only; ``dropout``, if given, goes to it too (the
    micro and macro children's default is 0.1; the nb201 supernet has none). ``num_nodes`` (enas_micro) and
    ``num_layers`` (enas_macro) are also the space's options; ``op_tanh_reduce`` and ``op_bias`` are the micro
    controller's, ``skip_target`` and ``skip_weight`` the macro controller's, and unused elsewhere. ``channels_last``:
    the child's weights and inputs in channels_last memory format (about 1.5x faster on CPU for the nb201 supernet).

    ``tanh_constant``, ``op_tanh_reduce``, ``op_bias`` and ``temperature`` shape the controller's logits; the
    authors' values bound its entropy below (about 45 nats for 5 nodes, see ``MicroController``).
    ``baseline_from_first_reward`` starts the moving-average baseline at the first reward instead of 0 (the
    authors'), which with decay 0.99 lags the rewards for some hundred samples, all of them rewarded. After the last epoch's
    controller phase ``compare_samples`` controller and uniform samples are scored (``compare_with_uniform``) and
    logged as ``samples/controller_top1`` and ``samples/uniform_top1``, so they reach that epoch's genotype history
    (the report's search signal) and its checkpoint.
    """

    baseline: torch.Tensor

    def __init__(
        self,
        space: Space = "enas_micro",
        num_classes: int = 10,
        in_chans: int = 3,
        C: PositiveInt | None = None,
        num_layers: int | None = None,
        num_nodes: PositiveInt = 5,
        dropout: Fraction | None = None,
        lstm_size: PositiveInt = 64,
        tanh_constant: PositiveFloat | None = None,
        op_tanh_reduce: PositiveFloat = 2.5,
        op_bias: tuple[float, ...] = (10.0, 10.0, 0.0, 0.0, 0.0),
        temperature: PositiveFloat | None = None,
        skip_target: float = 0.4,
        skip_weight: NonNegativeFloat = 0.8,
        lr: PositiveFloat = 0.05,
        lr_min: NonNegativeFloat = 5e-4,
        momentum: Fraction = 0.9,
        weight_decay: NonNegativeFloat = 2e-4,
        T_0: PositiveInt = 10,
        T_mult: PositiveInt = 2,
        grad_clip: PositiveFloat | None = 5.0,
        controller_lr: PositiveFloat | None = None,
        controller_steps: PositiveInt | None = None,
        controller_aggregate: PositiveInt | None = None,
        entropy_weight: NonNegativeFloat = 1e-4,
        baseline_decay: Fraction = 0.99,
        baseline_from_first_reward: bool = False,
        derive_samples: PositiveInt = 10,
        derive_batches: PositiveInt | None = None,
        compare_samples: NonNegativeInt = 20,
        genotype_filename: str = "genotype.json",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        name = ALIASES.get(space, space)
        search = AUTHORS.get(name, DECISIONS)
        given = {"C": C, "num_layers": num_layers, "tanh_constant": tanh_constant, "temperature": temperature,
                 "controller_lr": controller_lr, "controller_steps": controller_steps,
                 "controller_aggregate": controller_aggregate}
        resolved = {key: search.defaults[key] if value is None else value for key, value in given.items()}
        self.save_hyperparameters()
        self.hparams.update(resolved)
        self.automatic_optimization = False
        check(self.hparams["num_layers"] >= MIN_LAYERS, f"model.num_layers={self.hparams['num_layers']} is too small "
              f"for an ENAS search: set --model.num_layers {MIN_LAYERS} or more")
        hp = self.hp
        check(name in SPACES or is_import_path(name), f"model.space={space!r} is not a registered space; ENAS "
              f"searches one with a shared child: {', '.join(spaces_offering('shared_child'))}")
        self.search_space: SearchSpace = create_space(name, **{option: self.hparams[argument]
                                                               for option, argument in search.space_options.items()})
        """The space searched, by its decisions."""
        child_options = {} if dropout is None else {"dropout": dropout}
        self.child = cast(torch.nn.Module, self.search_space.shared_child(num_classes, in_chans, C=hp.C,
                                                                          layers=hp.num_layers, **child_options))
        self.controller = search.controller(self.search_space, hp)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.child.to(memory_format=self.memory_format)
        self.register_buffer("baseline", torch.tensor(float("nan") if baseline_from_first_reward else 0.0))
        """The moving average of the rewards; NaN until the first reward with ``baseline_from_first_reward``."""
        self._derived: Architecture | None = None
        self.history: list[dict[str, float]] = []
        """Per epoch: mean reward, baseline and controller entropy of the controller phase and the derived
        architecture's held-out accuracy (plotted at the end)."""
        self.comparison: dict[str, float] = {}
        """``compare_with_uniform(compare_samples)`` at the end of fit."""

    @property
    def hp(self) -> ENASHyperparameters:
        """``hparams`` with their types (``save_hyperparameters`` keeps every argument, ``__init__`` the resolved
        defaults)."""
        return cast(ENASHyperparameters, self.hparams)

    @property
    def data(self) -> NASDataModule:
        """The trainer's data module, whose held-out images score the architectures."""
        return cast(NASDataModule, getattr(self.trainer, "datamodule"))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        val_split = getattr(datamodule, "val_split", 0)
        check(bool(val_split), f"data.val_split={val_split}: ENAS rewards the controller on held-out training images; "
                               "set --data.init_args.val_split to e.g. 300 (digits) or 5000 (CIFAR-10)")

    # --- child -------------------------------------------------------------------------------------------------

    def sample_shared(self) -> ControllerSample:
        """A controller sample, as the space's decisions, whose architecture is rank 0's on every rank (its
        log-probability recomputed)."""
        sample = self.controller.sample_decisions()
        arch = self.trainer.strategy.broadcast(sample.arch, src=0)
        return sample if arch == sample.arch else self.controller.log_prob_decisions(arch)

    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> torch.Tensor:
        """One child step on a sampled architecture (a search-mode batch: its weights half; the arch half is unused,
        the rewards read held-out images); after the epoch's last batch, the controller phase."""
        if isinstance(batch, dict):
            batch = batch["weights"]
        with torch.no_grad():
            arch = self.sample_shared().arch  # on the host: the architecture decides which ops the child step runs
        step = self.global_step
        loss = self.child_step(batch, arch)
        check_finite(self, "child training", {"train/loss": loss}, step=step)  # the step skipped a non-finite one
        if batch_idx + 1 == self.trainer.num_training_batches:
            cast(torch.optim.lr_scheduler.LRScheduler, self.lr_schedulers()).step()
            self.controller_phase()
        return loss

    def child_step(self, batch: Batch, arch: Architecture) -> torch.Tensor:
        """One SGD step of the shared child with ``arch``, reading nothing on the host: a non-finite loss makes the
        fused optimizer skip it on the device (``skip_step_if``) and ``training_step`` raises after it."""
        child_optimizer, _ = cast(list[LightningOptimizer], self.optimizers())
        x, y = batch
        logits = self.child_logits(x, arch)
        loss = F.cross_entropy(logits, y)
        skip_step_if(child_optimizer, nonfinite_on_any_rank(self, loss))
        child_optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hp.grad_clip:
            # Lightning's annotation wants an Optimizer; a LightningOptimizer is an instance of its optimizer's class
            self.clip_gradients(child_optimizer, gradient_clip_val=self.hp.grad_clip,  # type: ignore[arg-type]
                                gradient_clip_algorithm="norm")
        child_optimizer.step()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/top1", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True, prog_bar=True)
        return loss.detach()

    def child_logits(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """The shared child's logits along the decisions ``arch``."""
        return cast(SharedChild, self.child)(x.contiguous(memory_format=self.memory_format), path=arch)

    # --- controller --------------------------------------------------------------------------------------------

    def heldout_batches(self) -> Iterator[Batch]:
        """Endless held-out minibatches for the rewards, in an order fixed by the epoch (under DDP the loader gives
        each rank its own share)."""
        loader = self.data.heldout_dataloader()
        cast(EpochSampler, loader.sampler).set_epoch(self.current_epoch)
        while True:
            for x, y in loader:
                yield x.to(self.device), y.to(self.device)

    @torch.no_grad()
    def accuracy(self, arch: Architecture, batch: Batch) -> torch.Tensor:
        """The child's accuracy with ``arch`` on one batch, BN in training mode as in the authors' search child."""
        x, y = batch
        return (self.child_logits(x, arch).argmax(1) == y).float().mean()

    def scoring(self) -> AbstractContextManager[None]:
        """The child as it scores architectures outside training (``shared_weights.scoring``: BN on the batch's
        statistics, as for the rewards, dropout off, BN's running statistics restored after)."""
        return scoring(self.child)

    def controller_phase(self) -> None:
        """REINFORCE with a moving-average baseline: loss = −log p · (R − b) (+ skip-KL for macro), per sample."""
        _, controller_optimizer = cast(list[LightningOptimizer], self.optimizers())
        hp = self.hp
        batches = self.heldout_batches()
        rewards, entropies = [], []
        for _ in range(hp.controller_steps):
            controller_optimizer.zero_grad()
            loss = torch.zeros((), device=self.device)
            for _ in range(hp.controller_aggregate):
                sample = self.sample_shared()
                accuracy = self.trainer.strategy.reduce(self.accuracy(sample.arch, next(batches)), reduce_op="mean")
                reward = accuracy + hp.entropy_weight * sample.entropy.to(self.device)
                if self.baseline.isnan():
                    self.baseline.copy_(reward)
                self.baseline.sub_((1 - hp.baseline_decay) * (self.baseline - reward))
                loss = loss - sample.log_prob * (reward - self.baseline) + hp.skip_weight * sample.skip_penalty
                rewards.append(float(reward))
                entropies.append(float(sample.entropy))
            check_finite(self, "controller phase", {"controller loss": loss}, hint="lower controller_lr")
            self.manual_backward(loss / hp.controller_aggregate)
            controller_optimizer.step()
        self._derived, derived_top1 = self.derive()
        self.history.append({"epoch": self.current_epoch, "reward": sum(rewards) / len(rewards),
                             "baseline": float(self.baseline), "entropy": sum(entropies) / len(entropies),
                             "derived_top1": derived_top1})
        # the architecture itself goes to GenotypeLogger's history file each epoch, not between the progress bars
        for key, value in self.history[-1].items():
            if key != "epoch":
                self.log(f"controller/{key}", value, on_step=False, on_epoch=True, prog_bar=key == "derived_top1")
        if hp.compare_samples and self.current_epoch + 1 == self.trainer.max_epochs:
            self.comparison = self.compare_with_uniform(hp.compare_samples)
            self.log_dict({f"samples/{key}": value for key, value in self.comparison.items()}, on_step=False,
                          on_epoch=True)
            self.print(f"held-out top-1 on the shared weights: controller samples "
                       f"{self.comparison['controller_top1']:.3f}, uniform samples {self.comparison['uniform_top1']:.3f}")

    # --- derivation and evaluation on the shared weights -------------------------------------------------------

    def heldout_accuracy(self, archs: Sequence[Architecture]) -> torch.Tensor:
        """Each architecture's accuracy on the same held-out images, the first ``derive_batches`` batches in their
        fixed order or all of them (under DDP each rank scores its share; counts are summed), the child in
        ``scoring`` mode."""
        return heldout_accuracy(self, self.child, archs, self.accuracy, self.hp.derive_batches)

    def sample_archs(self, count: int, uniform: bool = False) -> list[Architecture]:
        """``count`` architectures' decisions from the controller (or drawn as the space draws), rank 0's on every
        rank."""
        archs = [draw_decisions(self.search_space) if uniform else self.controller.sample_decisions().arch
                 for _ in range(count)]
        return self.trainer.strategy.broadcast(archs, src=0)

    @torch.no_grad()
    def derive(self) -> tuple[Architecture, float]:
        """The best of ``derive_samples`` controller samples by held-out accuracy, with that accuracy."""
        archs = self.sample_archs(self.hp.derive_samples)
        scores = self.heldout_accuracy(archs)
        best = int(scores.argmax())
        return archs[best], float(scores[best])

    @torch.no_grad()
    def compare_with_uniform(self, num_samples: int = 20) -> dict[str, float]:
        """Mean held-out accuracy on the shared weights of ``num_samples`` controller samples and of as many uniform
        samples, on the derivation's images: ``{"controller_top1": ..., "uniform_top1": ...}``."""
        scores = self.heldout_accuracy(self.sample_archs(num_samples) + self.sample_archs(num_samples, uniform=True))
        return {"controller_top1": float(scores[:num_samples].mean()), "uniform_top1": float(scores[num_samples:].mean())}

    def genotype(self) -> Any:
        """The derived architecture of the last controller phase (derived now if there was none yet), as the space
        decodes it: a Genotype (enas_micro), a MacroArchitecture (enas_macro), an NB201Architecture (nb201)."""
        if self._derived is None:
            self._derived, _ = self.derive()
        return self.search_space.decode(self._derived)

    # --- optimisers and checkpoints ----------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        hp = self.hp
        weights = cast(SharedChild, self.child).weight_parameters()  # the nb201 supernet's α is not the child's
        child = fused_sgd(weights, hp.lr, hp.momentum, hp.weight_decay, nesterov=True)
        # The authors' Adam: beta1 = 0, epsilon = 1e-3.
        controller = torch.optim.Adam(self.controller.parameters(), lr=hp.controller_lr, betas=(0.0, 0.999), eps=1e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(child, T_0=hp.T_0, T_mult=hp.T_mult,
                                                                        eta_min=hp.lr_min)
        return [child, controller], [schedule]

    def configure_callbacks(self) -> list[pl.Callback]:
        return [GenotypeExport(self.hp.genotype_filename), GenotypeLogger(), EpochSeeding()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The history and the derived architecture as the controller samples it: the authors' micro and macro
        architectures as their fields, other spaces' decisions as a list."""
        checkpoint["enas_history"] = self.history
        derived = None
        if self._derived is not None:
            arch = self.controller.architecture(self._derived)
            derived = list(arch) if isinstance(arch, tuple) else dataclasses.asdict(arch)
        checkpoint["enas_derived"] = derived

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("enas_history", []))
        derived = checkpoint.get("enas_derived")
        self._derived = None if derived is None else self.controller.decisions(derived)

    # --- validate ----------------------------------------------------------------------------------------------

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """``validate`` (or validation during fit) scores the architecture the search derived last on the shared
        weights, the child in ``scoring`` mode: ``val/top1``. It needs a search checkpoint (``--ckpt_path``)."""
        if self._derived is None and self.trainer.state.fn == "fit":
            return  # validation before the first controller phase (e.g. the sanity check): nothing derived yet
        if self._derived is None:
            raise ConfigError("ENAS validation scores the architecture a search derived, and none is derived yet: "
                              "give a search checkpoint with --ckpt_path (e.g. last)")
        with self.scoring():
            accuracy = self.accuracy(self._derived, batch)
        self.log("val/top1", accuracy, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(batch[1]))

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero and self.history:
            path = join(run_directory(self.trainer), "plots", "enas_curves.png")
            write_atomic(path, controller_curves_png(self.history))
