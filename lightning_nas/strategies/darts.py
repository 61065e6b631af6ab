"""DARTS search as a LightningModule: alternating architecture (α) and weight (w) steps on the supernet.

Each training step reads a search-mode batch ``{"weights": (x, y), "arch": (x, y)}``: first an α step (Adam) on the
architecture batch, then a w step (SGD, cosine lr, grad-norm clip) on the weight batch; during the first
``arch_warmup_epochs`` only w trains. First order uses ∇α L_val(w, α); second order (``unrolled=True``) differentiates
through one virtual weight step (``darts_architect.unrolled_arch_gradient``). Every backward pass goes through
``manual_backward`` so DDP averages α and w gradients across ranks. With ``beta_decay`` > 0 the α step's loss adds
β-DARTS's Beta-Decay regulariser (``beta_decay_loss``).
"""

import math
from typing import Literal, Protocol, Sequence, cast

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.arguments import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning_nas.callbacks import EpochSeeding, GenotypeExport, GenotypeLogger
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import absolute, join
from lightning_nas.genotypes import Genotype
from lightning_nas.run_folder import run_directory
from lightning_nas.spaces import Architecture, create_space, space_options
from lightning_nas.strategies.cuda_graph import GraphedStep, adam_options, check_graphable, fused_sgd, lr_tensors_to
from lightning_nas.strategies.darts_architect import Batch, VirtualStep, unrolled_arch_gradient
from lightning_nas.strategies.finite import nonfinite_on_any_rank, skip_step_if

__all__ = ["DARTS", "alpha_entropy", "beta_decay_loss", "unrolled_arch_gradient"]


Sampler = Literal["softmax", "gumbel"]


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of softmax(α) over the edges: log(#ops) at the start, 0 once every edge is decided."""
    log_p = F.log_softmax(alpha.detach(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1).mean()


def beta_decay_loss(alphas: Sequence[torch.Tensor]) -> torch.Tensor:
    """β-DARTS's Beta-Decay regulariser (Ye et al., CVPR 2022): the mean over every edge of every α of
    logsumexp(α_edge), the smooth maximum of the edge's architecture parameters. Its gradient on α_edge is
    softmax(α_edge) / #edges, which pushes each α down in proportion to its op's weight β = softmax(α): the leading op
    loses the most, so α's spread on an edge stays small and the softmax stays comparable across edges."""
    return torch.cat([alpha.logsumexp(-1).flatten() for alpha in alphas]).mean()


class DARTSHyperparameters(Protocol):
    """The types of the ``hparams`` DARTS reads after ``__init__``."""

    unrolled: bool
    virtual_step: VirtualStep
    w_lr: float
    w_lr_min: float
    w_momentum: float
    w_weight_decay: float
    w_grad_clip: float
    arch_lr: float
    arch_betas: tuple[float, float]
    arch_weight_decay: float
    arch_relaxation_steps: int | None
    sampler: Sampler
    tau_max: float
    tau_min: float
    arch_warmup_epochs: int
    beta_decay: float
    max_skip_connect: int | None
    num_threads: int | None
    genotype_filename: str
    train_config: str
    space: str
    cuda_graph: bool


class DARTS(pl.LightningModule):
    """DARTS search (Liu et al., 2019) on the one-shot supernet of a registered space (``space``: ``darts`` cells,
    the paper's ``SearchNetwork``, by default; ``nb201`` for NAS-Bench-201's), first or second order (``unrolled``).

    ``genotype()`` derives the current architecture at any time; a ``GenotypeExport`` callback writes it next to the
    checkpoints every epoch and at the end. Both optimizers and the weight lr schedule live in the checkpoint; with
    the data module's (seed, epoch) shuffling and ``EpochSeeding``, a resumed search continues exactly. A non-finite
    loss or gradient skips the step's updates on the device and then stops the search with a FloatingPointError,
    leaving the parameters, the last checkpoint and genotype file as they were before that step. At the end of fit it prints how far α moved, the supernet's top-1 and the command that
    trains the found genotype.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        C: PositiveInt = 16,
        layers: int = 8,
        nodes: PositiveInt | None = None,
        stem_multiplier: PositiveInt = 3,
        primitives: Sequence[str] | None = None,
        unrolled: bool = False,
        virtual_step: VirtualStep = "official",
        partial_channels: PositiveInt = 1,
        checkpoint_cells: NonNegativeInt = 0,
        recompute_ops: bool = False,
        w_lr: PositiveFloat = 0.025,
        w_lr_min: NonNegativeFloat = 0.001,
        w_momentum: Fraction = 0.9,
        w_weight_decay: NonNegativeFloat = 3e-4,
        w_grad_clip: PositiveFloat = 5.0,
        arch_lr: PositiveFloat = 3e-4,
        arch_betas: tuple[Fraction, Fraction] = (0.5, 0.999),
        arch_weight_decay: NonNegativeFloat = 1e-3,
        arch_relaxation_steps: PositiveInt | None = None,
        arch_warmup_epochs: NonNegativeInt = 0,
        beta_decay: NonNegativeFloat = 0.0,
        max_skip_connect: NonNegativeInt | None = None,
        channels_last: bool = True,
        num_threads: PositiveInt | None = None,
        genotype_filename: str = "genotype.json",
        train_config: str = "train_cifar10",
        space: str = "darts",
        sampler: Sampler = "softmax",
        tau_max: PositiveFloat = 10.0,
        tau_min: PositiveFloat = 0.1,
        cuda_graph: bool = False,
    ) -> None:
        """``virtual_step``: the second-order virtual weight step (see ``darts_architect``). "official" (default) is
        the step the weight optimizer takes next, momentum and weight decay included, as in the code behind the
        published results; "paper" is eq. 7's plain gradient step. ``partial_channels``: K of PC-DARTS (1/K of the
        channels through each mixed op, edge normalisation; 1 is DARTS). ``arch_warmup_epochs``: epochs of w steps
        only before α starts to learn, so α is not judged on untrained ops (PC-DARTS: 15 of 50). ``max_skip_connect``:
        P-DARTS's cap on skip_connects in the derived normal cell (None: DARTS's plain derivation).
        ``checkpoint_cells``: recompute the first k cells in the backward pass instead of keeping their activations
        (the same results with less memory, for one more forward pass of those cells; see ``SearchNetwork``).
        ``recompute_ops``: every candidate op keeps only its BN outputs for the backward pass and recomputes its
        cheap layers (the same results with about 30% less peak memory for about 10% more time; PERFORMANCE.md).
        ``channels_last``: the supernet's weights and inputs in channels_last memory format, about 1.5x faster on CPU
        (depthwise convs and pooling) with the same results up to float rounding. ``num_threads``: torch's CPU threads
        for this process; a tiny supernet runs faster on one, far faster on a shared machine (None: torch's default).
        ``train_config``: the final-training recipe (a shipped recipe's name, or a file) named in the command
        printed at the end. ``space``: the registered space whose supernet is searched; ``nodes`` and ``primitives``
        are its options (None: the space's defaults, DARTS's 4 nodes and 8 ops).

        ``arch_relaxation_steps``: how many α steps α takes to forget (decay to 1/e of) what it learned, when no
        gradient pushes it. The paper's α optimizer (the default, None) is Adam with a coupled L2 ``arch_weight_decay``,
        whose pull back is normalised by the gradient's RMS σ, so its relaxation time, about σ/(arch_lr ·
        arch_weight_decay) steps, moves with the arch lr and the noise: 23,000 steps at the paper's lr 3e-4, but about
        90 at 0.08 (SEARCH_QUALITY.md), shorter than a short search, so α forgot. Set, α uses AdamW's decoupled decay
        with weight_decay = 1 / (arch_lr · steps): the relaxation time is exactly ``steps`` whatever the lr (pick it
        longer than the search's α steps); ``arch_weight_decay`` is then unused.

        ``sampler``: "softmax" weighs every op by softmax(α) (DARTS); "gumbel" is GDAS (Dong & Yang, CVPR 2019): each
        forward pass draws one op per edge (Gumbel-max, a hard one-hot sample with the Gumbel softmax's straight-through
        gradient) and computes only it, with the temperature annealed linearly from ``tau_max`` to ``tau_min`` over the
        epochs (GDAS: 10 to 0.1).

        ``beta_decay``: λ of β-DARTS (Ye et al., CVPR 2022; 0, the default, is plain DARTS): the α step's loss adds
        λ_t · ``beta_decay_loss``(α), the mean over edges of logsumexp(α_edge), with λ_t rising linearly over the
        epochs that train α, from 0 at the first: λ_t = λ · k / K in the k-th of K α epochs, as in the authors' code
        (``50 * epoch / 100``, no warm-up: λ = 50 over their 100 epochs). Why: DARTS collapses to parameter-free ops (skip_connect, pooling, none) partly because α grows
        without bound on the edges where those ops win early, so softmax(α) saturates there and the edges' weights
        stop being comparable; the regulariser's gradient, λ_t · softmax(α_edge) / #edges, decays the leading op's α
        the most and keeps α small. It works first and second order, and on either space's supernet. Under Adam (the
        paper's α optimizer too) its size against α's data gradient is what matters, as Adam divides each α's step
        by that α's gradient RMS: far above it, every α falls alike by the lr per step and the data term's effect on α
        shrinks in proportion, so a short search needs a smaller λ than the paper's; near it, the push down is
        larger on the ops whose gradient is quietest (on the nb201 supernet with Fashion-MNIST: none, RMS 0.007,
        against nor_conv_3x3's 0.031), which is Adam's doing, not softmax(α)'s (recipes/betadarts_nb201_fmnist.yaml).

        ``cuda_graph``: replay each search step as one CUDA graph (``cuda_graph.GraphedStep``: 3 eager warm-up steps,
        then one capture per step kind), so its thousands of small kernels launch at once; on one CUDA device, with
        the softmax sampler (GDAS draws its ops on the host) and no ``checkpoint_cells`` (its RNG stash cannot be
        captured). Callbacks' backward and optimizer-step hooks then run at capture only."""
        super().__init__()
        check(layers >= 3, f"DARTS needs layers >= 3, got layers={layers}: the cells 1/3 and 2/3 deep are reduction "
                           "cells, so fewer leave no normal cell to search; set --model.layers 3 or more")
        check(virtual_step in ("official", "paper"), f"virtual_step must be official or paper, got {virtual_step!r}")
        check(sampler in ("softmax", "gumbel"), f"sampler must be softmax (DARTS) or gumbel (GDAS), got {sampler!r}")
        check(sampler == "softmax" or (not unrolled and partial_channels == 1),
              "GDAS (sampler gumbel) is first order on whole channels: drop --model.unrolled and partial_channels")
        check(tau_min <= tau_max, f"GDAS's temperature anneals down: tau_min={tau_min} must not exceed "
                                  f"tau_max={tau_max} (GDAS: 10 -> 0.1)")
        check(not cuda_graph or (sampler == "softmax" and checkpoint_cells == 0),
              "cuda_graph replays a step whose ops are fixed: drop --model.sampler gumbel and checkpoint_cells")
        self.save_hyperparameters()
        self.automatic_optimization = False
        search_space = create_space(space, **space_options(nodes, primitives))
        self.network = search_space.mixture_supernet(
            num_classes, in_chans, C=C, layers=layers, stem_multiplier=stem_multiplier,
            partial_channels=partial_channels, checkpoint_cells=checkpoint_cells, recompute_ops=recompute_ops,
        )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        cast(torch.nn.Module, self.network).to(memory_format=self.memory_format)
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_loss = MeanMetric()
        self.start_entropy: dict[str, float] | None = None
        self._graph: tuple[bool, GraphedStep] | None = None
        """With ``cuda_graph``: whether the graph of the step in use takes an α step, and the graph. The w-only graph of
        the warm-up epochs is dropped (with its memory) when α steps start."""
        self._beta_weight = torch.zeros(())
        """λ_t of ``beta_decay`` in this epoch, a tensor on the module's device written in place (``_anneal``), so
        that a captured CUDA graph reads each epoch's value."""
        self._last_derived = ""
        """The text form of the architecture derived at the last epoch end (or the start of fit)."""
        self.genotype()  # a max_skip_connect the primitives cannot meet fails here, not after the first epoch

    @property
    def hp(self) -> DARTSHyperparameters:
        """``hparams`` with their types (``save_hyperparameters`` keeps every ``__init__`` argument)."""
        return cast(DARTSHyperparameters, self.hparams)

    def forward(self, x: torch.Tensor, alpha_grad: bool = True, weight_grad: bool = True) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=self.memory_format), alpha_grad, weight_grad)

    def genotype(self) -> Architecture:
        return self.network.genotype(self.hp.max_skip_connect)

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.network.primitives

    def alpha_weights(self) -> dict[str, torch.Tensor]:
        """softmax(α) per cell type, for the GenotypeLogger's heat maps."""
        return {cell: F.softmax(alpha, dim=-1) for cell, alpha in self.network.alphas().items()}

    def loss(self, batch: Batch, alpha_grad: bool = True, weight_grad: bool = True) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x, alpha_grad, weight_grad), y)

    @property
    def skip_unused_gradients(self) -> bool:
        """Whether the α step may skip the weight gradients and the w step the α gradients (about a third of each
        backward pass, and the activations only those gradients need). Not under DDP: its reducer expects every
        parameter's gradient in every backward pass."""
        return self.trainer.world_size == 1

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        if not isinstance(batch, dict) or set(batch) != {"weights", "arch"}:
            raise ConfigError("DARTS takes search-mode batches {'weights': (x, y), 'arch': (x, y)}; set data.mode=search")
        # α step on the architecture batch once the warm-up epochs have trained w, then the w step on the weight batch
        arch_step = self.current_epoch >= self.hp.arch_warmup_epochs
        step = self._graphed_search_step if self.hp.cuda_graph else self.search_step
        loss, found_inf = step(batch, arch_step)
        self._stop_if_not_finite(found_inf, batch_idx)
        self.log("train/loss", loss, prog_bar=True)
        # per step, so callbacks see this epoch's last value at its end (epoch-end logs of the module come after them)
        for cell, alpha in self.network.alphas().items():
            self.log(f"arch/entropy_{cell}", alpha_entropy(alpha))

    def search_step(self, batch: dict[str, Batch], arch_step: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The α step (if ``arch_step``) and the w step, reading nothing on the host, so that one CUDA graph can replay
        them: a non-finite loss or gradient skips the α step and the w step after it on the device (``skip_step_if``).
        Returns the w step's loss and the (α step, w step) non-finite flags, for ``training_step`` to read after it."""
        w_optimizer, arch_optimizer = cast(list[LightningOptimizer], self.optimizers())
        no_arch_step = torch.zeros((), device=self.device)
        arch_found = self._arch_step(batch, w_optimizer, arch_optimizer) if arch_step else no_arch_step
        w_optimizer.zero_grad()
        loss = self.loss(batch["weights"], alpha_grad=not self.skip_unused_gradients)
        self.manual_backward(loss)
        w_found = torch.maximum(arch_found, nonfinite_on_any_rank(self, loss))
        skip_step_if(w_optimizer, w_found)
        # Lightning's annotation wants an Optimizer; a LightningOptimizer is an instance of its optimizer's class
        self.clip_gradients(w_optimizer, gradient_clip_val=self.hp.w_grad_clip,  # type: ignore[arg-type]
                            gradient_clip_algorithm="norm")
        w_optimizer.step()
        return loss.detach(), torch.stack([arch_found, w_found])

    def _arch_step(
        self, batch: dict[str, Batch], w_optimizer: LightningOptimizer, arch_optimizer: LightningOptimizer
    ) -> torch.Tensor:
        """One α step, skipped where its loss or gradient is not finite; returns that flag. In a method of its own so
        that its loss and graph are freed before the w step allocates: holding them raised the search step's peak RSS
        by 0.3-0.6 GB at batch 32."""
        arch_optimizer.zero_grad()
        alphas = self.network.arch_parameters()
        if self.hp.unrolled:
            xi = w_optimizer.param_groups[0]["lr"]
            official = w_optimizer.optimizer if self.hp.virtual_step == "official" else None
            unrolled_arch_gradient(
                self.network, self.loss, batch["weights"], batch["arch"], xi, self.manual_backward,
                self._mean_across_ranks, official, self.skip_unused_gradients,
            )
            if self.hp.beta_decay:  # the same on every rank: added after DDP averaged the data term
                regulariser = torch.autograd.grad(self._beta_weight * beta_decay_loss(alphas), alphas)
                for alpha, gradient in zip(alphas, regulariser):
                    cast(torch.Tensor, alpha.grad).add_(gradient)
            found = nonfinite_on_any_rank(self, *(a.grad for a in alphas))
        else:
            arch_loss = self.loss(batch["arch"], weight_grad=not self.skip_unused_gradients)
            if self.hp.beta_decay:
                arch_loss = arch_loss + self._beta_weight * beta_decay_loss(alphas)
            self.manual_backward(arch_loss)
            found = nonfinite_on_any_rank(self, arch_loss, *(a.grad for a in alphas))
        skip_step_if(arch_optimizer, found)
        arch_optimizer.step()
        return found

    def _graphed_search_step(self, batch: dict[str, Batch], arch_step: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``search_step`` replayed as a CUDA graph. A replay runs none of Lightning's Python, so the optimizer steps
        it took are counted here as the manual-optimization loop counts them (the trainer's global step)."""
        if self._graph is None or self._graph[0] != arch_step:
            self._graph = None  # the old graph's memory is free before the new one captures
            self._graph = arch_step, GraphedStep(
                lambda xw, yw, xa, ya: self.search_step({"weights": (xw, yw), "arch": (xa, ya)}, arch_step)
            )
        graph = self._graph[1]
        outputs = graph(*batch["weights"], *batch["arch"])
        if graph.replayed:
            optimizers = cast(list[LightningOptimizer], self.optimizers())
            for optimizer in optimizers if arch_step else optimizers[:1]:
                optimizer._on_before_step()
                optimizer._on_after_step()
        return outputs

    def _stop_if_not_finite(self, found_inf: torch.Tensor, batch_idx: int) -> None:
        """Raise a FloatingPointError after a step whose α or w step met a NaN or infinite loss or gradient on any
        rank (``search_step``'s flags, read here once): that step changed no parameter, so no checkpoint or genotype
        is written from a diverged search."""
        arch_found, w_found = found_inf.tolist()
        if arch_found or w_found:
            raise FloatingPointError(
                f"DARTS search diverged: non-finite loss or gradient in the {'α' if arch_found else 'w'} step of epoch "
                f"{self.current_epoch}, step {batch_idx}; stopped before updating, so the last checkpoint and "
                f"{self.hp.genotype_filename} hold the last good state (lower arch_lr or w_lr?)"
            )

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

    def setup(self, stage: str) -> None:
        if self.hp.num_threads:
            torch.set_num_threads(self.hp.num_threads)

    def on_fit_start(self) -> None:
        if self.hp.cuda_graph:
            check_graphable(self, "search step")
        self._beta_weight = torch.zeros((), device=self.device)
        self._anneal()

    def on_train_epoch_start(self) -> None:
        self._anneal()

    def _anneal(self) -> None:
        """This epoch's GDAS temperature, linear from tau_max at the first epoch to tau_min at the last, and β-DARTS's
        λ_t, linear from 0 at the first α epoch (after the warm-up) to λ · (K - 1) / K at the last of K."""
        arch_epochs = max((self.trainer.max_epochs or 1) - self.hp.arch_warmup_epochs, 1)
        arch_epoch = max(self.current_epoch - self.hp.arch_warmup_epochs, 0)
        self._beta_weight.fill_(self.hp.beta_decay * arch_epoch / arch_epochs)
        if self.hp.sampler == "gumbel":
            epochs = max((self.trainer.max_epochs or 1) - 1, 1)
            progress = min(self.current_epoch / epochs, 1.0)
            self.network.tau = self.hp.tau_max - (self.hp.tau_max - self.hp.tau_min) * progress

    def on_train_start(self) -> None:
        lr_tensors_to(self.trainer.optimizers, self.device)  # after a resume's load (its lrs come back on the CPU)
        self.start_entropy = self._entropies()
        self._last_derived = str(self.genotype())

    def _entropies(self) -> dict[str, float]:
        return {cell: float(alpha_entropy(alpha)) for cell, alpha in self.network.alphas().items()}

    def on_train_epoch_end(self) -> None:
        cast(torch.optim.lr_scheduler.LRScheduler, self.lr_schedulers()).step()
        self._log_changed_architecture()

    def _log_changed_architecture(self) -> None:
        """``arch/changed`` in the progress bar: how many lines of the derived architecture's text form (a DARTS
        cell's nodes) changed in this epoch. Each epoch's whole architecture goes to GenotypeLogger's history file,
        not between the progress bars."""
        derived = str(self.genotype())
        changed = sum(old != new for old, new in zip(self._last_derived.splitlines(), derived.splitlines()))
        self.log("arch/changed", float(changed), prog_bar=True)
        self._last_derived = derived

    @rank_zero_only
    def on_fit_end(self) -> None:
        """Say whether the search decided anything, how good the supernet is, and how to train what it found."""
        if self.start_entropy is None:  # fit ended before training started
            return
        uniform = math.log(len(self.op_names))
        moved = [
            f"{cell} {start:.3f} -> {end:.3f} ({(end - start) / uniform:+.0%} of log {len(self.op_names)})"
            for (cell, start), end in zip(self.start_entropy.items(), self._entropies().values())
        ]
        top1 = self.trainer.callback_metrics.get("val/top1")
        path = absolute(join(run_directory(self.trainer), self.hp.genotype_filename))
        if isinstance(self.genotype(), Genotype):
            next_step = (f"train the found cells: python -m lightning_nas.recipes.train fit --config "
                         f"{self.hp.train_config} --model.genotype {path}")
        else:  # a benchmark space's cell: its own network, e.g. timm.create_model("nb201", genotype=path)
            next_step = f"build its network: timm.create_model({self.hp.space!r}, genotype={str(path)!r})"
        print(
            f"α entropy (nats): {', '.join(moved)}\n"
            f"supernet val/top1: {'n/a' if top1 is None else f'{float(top1):.4f}'}\n"
            f"{next_step}"
        )

    def arch_optimizer(self) -> torch.optim.Optimizer:
        """α's optimizer: the paper's Adam with coupled L2 decay, or AdamW whose decoupled decay makes α forget in
        exactly ``arch_relaxation_steps`` (α *= 1 - lr·λ per step, so 1/e after that many)."""
        hp = self.hp
        beta1, beta2 = hp.arch_betas  # a list when read from a config
        lr, options = self._tensor(hp.arch_lr), adam_options(self.device)
        if hp.arch_relaxation_steps is None:
            return torch.optim.Adam(self.network.arch_parameters(), lr, betas=(beta1, beta2),
                                    weight_decay=hp.arch_weight_decay, **options)
        return torch.optim.AdamW(self.network.arch_parameters(), lr, betas=(beta1, beta2),
                                 weight_decay=1.0 / (hp.arch_lr * hp.arch_relaxation_steps), **options)

    def _tensor(self, lr: float) -> torch.Tensor:
        """A learning rate as a tensor on the module's device: schedules write into it in place, so a CUDA graph
        captured once reads each epoch's value."""
        return torch.tensor(lr, device=self.device)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LRScheduler]]:
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ConfigError(f"DARTS anneals the weight lr over trainer.max_epochs; set it (got {max_epochs})")
        hp = self.hp
        w_optimizer = fused_sgd(self.network.weight_parameters(), self._tensor(hp.w_lr), hp.w_momentum,
                                hp.w_weight_decay)
        arch_optimizer = self.arch_optimizer()
        w_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(w_optimizer, max_epochs, eta_min=hp.w_lr_min)
        return [w_optimizer, arch_optimizer], [w_schedule]

    def configure_callbacks(self) -> list[pl.Callback]:
        return [GenotypeExport(self.hp.genotype_filename), GenotypeLogger(), EpochSeeding()]
