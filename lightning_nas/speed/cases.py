"""The speed bench's cases: the strategies' own LightningModules driven by an ordinary Trainer on random images.

A callback times what the module does: a training step (``training_step``: for DARTS the α step and the w step), a
candidate epoch (PNAS) or a controller step (ENAS, the gap between two controller optimizer steps). No algorithm is
re-implemented here.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import TYPE_CHECKING, Any, Callable

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.speed.dispatch import DispatchCount

if TYPE_CHECKING:
    from lightning_nas.strategies.darts import Sampler
from lightning_nas.speed.measure import clocks, random_images, reset_peak_memory, result
from lightning_nas.data.base import NASDataModule


class RandomImages(NASDataModule):
    """Random CIFAR-sized images (3x32x32, 10 classes): enough of them for the steps a case runs, nothing read."""

    num_classes = 10
    input_size = (3, 32, 32)
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self, images: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images

    def make_train_set(self, train: bool) -> Dataset:
        return TensorDataset(*random_images(self.images))

    def make_test_set(self) -> Dataset:
        return self.make_train_set(train=False)


class StepTimer(pl.Callback):
    """Wall and CPU time of every training batch, or of every training epoch (``per_epoch``); the peak memory is reset
    when the first timed one (after ``warmup``) starts."""

    def __init__(self, device: str, warmup: int, per_epoch: bool = False) -> None:
        self.device, self.warmup, self.per_epoch = torch.device(device), warmup, per_epoch
        self.times: list[tuple[float, float]] = []
        self._start = (0.0, 0.0)

    def _begin(self) -> None:
        if len(self.times) == self.warmup:
            reset_peak_memory(self.device)
        self._start = clocks(self.device)

    def _elapsed(self) -> tuple[float, float]:
        wall, cpu = clocks(self.device)
        return wall - self._start[0], cpu - self._start[1]

    def on_train_batch_start(self, *args: Any) -> None:
        if not self.per_epoch:
            self._begin()

    def on_train_batch_end(self, *args: Any) -> None:
        if not self.per_epoch:
            self.times.append(self._elapsed())

    def on_train_epoch_start(self, *args: Any) -> None:
        if self.per_epoch:
            self._begin()

    def on_train_epoch_end(self, *args: Any) -> None:
        if self.per_epoch:
            self.times.append(self._elapsed())


class OptimizerStepTimer(pl.Callback):
    """Time between successive steps of one of the module's optimizers (ENAS: one controller step each); the peak
    memory is reset when the first timed one (after ``warmup``) starts."""

    def __init__(self, device: str, index: int, warmup: int) -> None:
        self.device, self.index, self.warmup = torch.device(device), index, warmup
        self.stamps: list[tuple[float, float]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.optimizers[self.index].register_step_post_hook(lambda *args: self._stamp())

    def _stamp(self) -> None:
        if len(self.stamps) == self.warmup:
            reset_peak_memory(self.device)
        self.stamps.append(clocks(self.device))

    @property
    def times(self) -> list[tuple[float, float]]:
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.stamps, self.stamps[1:])]


class FlopCount(pl.Callback):
    """Model FLOPs of the first training batch (a warm-up one): three times the forward passes' FLOPs as torch's
    ``FlopCounterMode`` counts them (the usual convention of model-FLOP utilization). Its own count of the backward
    pass is not used: it ignores the groups of a depthwise convolution's weight gradient, several times too many."""

    def __init__(self) -> None:
        self.flops: int | None = None
        self._mode: FlopCounterMode | None = None

    def on_train_batch_start(self, *args: Any) -> None:
        if self.flops is None and self._mode is None:
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()

    def on_train_batch_end(self, *args: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            counts = self._mode.get_flop_counts()["Global"]
            self.flops = 3 * sum(n for op, n in counts.items() if not str(op).endswith("_backward"))
            self._mode = None


class KernelCount(pl.Callback):
    """Kernels and host syncs that training batch ``index`` (a warm-up one) dispatches (``dispatch.DispatchCount``):
    the launches a GPU would see from Python, counted on any device. A replayed CUDA graph is one launch the
    dispatcher does not see: its steps count the input copies and the reads after it only."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.dispatch: tuple[int, int] | None = None
        self._count: DispatchCount | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.current_epoch == 0 and batch_idx == self.index:
            self._count = DispatchCount().__enter__()

    def on_train_batch_end(self, *args: Any) -> None:
        if self._count is not None:
            self._count.__exit__(None, None, None)
            self.dispatch, self._count = (self._count.kernels, self._count.total_syncs), None


class Compiled(pl.Callback):
    """``torch.compile`` the module's network (its largest child module) in place, as ``nn.Module.compile`` does."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        network = max(pl_module.children(), key=lambda m: sum(p.numel() for p in m.parameters()))
        network.compile(mode=self.mode)


class ChannelsLast(pl.Callback):
    """Weights and the network input in channels_last memory format."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)
        first_conv = next(m for m in pl_module.modules() if isinstance(m, nn.Conv2d))
        first_conv.register_forward_pre_hook(lambda m, args: (args[0].contiguous(memory_format=torch.channels_last),))


# --- cases: (module, data module, timer, trainer arguments, images per timed unit) from the worker's arguments -------

def darts_case(unrolled: bool, sampler: Sampler = "softmax") -> Callable[..., tuple]:
    def build(args: argparse.Namespace, repeats: int) -> tuple:
        from lightning_nas.strategies.darts import DARTS

        batch = args.batch[0]
        module = DARTS(C=args.C[0], layers=args.layers[0], unrolled=unrolled, partial_channels=args.partial_channels,
                       checkpoint_cells=args.checkpoint_cells, recompute_ops=args.recompute_ops, sampler=sampler,
                       cuda_graph=args.cuda_graph)
        data = RandomImages(2 * batch * repeats, mode="search", batch_size=batch)
        return module, data, StepTimer(args.device, args.warmup), {"limit_train_batches": repeats}, batch

    return build


def enas_child(args: argparse.Namespace, repeats: int) -> tuple:
    from lightning_nas.strategies.enas import ENAS

    module = ENAS(space="micro")
    module.controller_phase = lambda: None  # type: ignore[method-assign]  # this case times the child steps alone
    batch = args.batch[0]
    data = RandomImages(batch * (repeats + 2), batch_size=batch, val_split=batch)
    return module, data, StepTimer(args.device, args.warmup), {"limit_train_batches": repeats}, batch


def enas_controller(args: argparse.Namespace, repeats: int) -> tuple:
    from lightning_nas.strategies.enas import ENAS

    batch = args.batch[0]
    module = ENAS(space="micro", controller_steps=repeats + 1)
    data = RandomImages(batch * 3, batch_size=batch, val_split=batch)
    images = batch * module.hp.controller_aggregate
    timer = OptimizerStepTimer(args.device, index=1, warmup=args.warmup)
    return module, data, timer, {"limit_train_batches": 1}, images


PNAS_BATCHES = 8
"""Training batches in one benchmarked PNAS candidate epoch (plus 2 validation batches)."""


def pnas_epoch(args: argparse.Namespace, repeats: int) -> tuple:
    from lightning_nas.genotypes import resolve_genotype
    from lightning_nas.strategies.candidates import CandidateModule, ProxyBudget

    batch = args.batch[0]
    module = CandidateModule(resolve_genotype("PNASNet").to_dict(), num_classes=10, in_chans=3,
                             budget=ProxyBudget(N=2, F=24, epochs=repeats))
    data = RandomImages(batch * (PNAS_BATCHES + 2), batch_size=batch, val_split=2 * batch)
    trainer_args = {"limit_train_batches": PNAS_BATCHES, "limit_val_batches": 2, "max_epochs": repeats}
    return module, data, StepTimer(args.device, args.warmup, per_epoch=True), trainer_args, batch * PNAS_BATCHES


def final_step(args: argparse.Namespace, repeats: int) -> tuple:
    from lightning_nas.strategies.final_training import FinalTraining

    batch = args.batch[0]
    module = FinalTraining("DARTS_V2", C=36, layers=20, cuda_graph=args.cuda_graph)
    data = RandomImages(batch * repeats, batch_size=batch)
    trainer_args = {"limit_train_batches": repeats, "gradient_clip_val": 5.0}
    return module, data, StepTimer(args.device, args.warmup), trainer_args, batch


CASES: dict[str, tuple[Callable[..., tuple], str]] = {
    "darts_first": (darts_case(unrolled=False), "DARTS search step, first order"),
    "darts_second": (darts_case(unrolled=True), "DARTS search step, second order"),
    "darts_gdas": (darts_case(unrolled=False, sampler="gumbel"), "GDAS search step (one sampled op per edge)"),
    "enas_child": (enas_child, "ENAS micro child step (F=20, 6+2 cells)"),
    "enas_controller": (enas_controller, "ENAS micro controller step (10 architectures scored)"),
    "pnas_epoch": (pnas_epoch, f"PNAS proxy candidate epoch (N=2, F=24, {PNAS_BATCHES} batches + 2 val)"),
    "final_step": (final_step, "DARTS_V2 training step (C=36, 20 cells, auxiliary head)"),
}
"""name -> (builder, description); the command line (``cli.DEFAULT_BATCHES``) gives each its batch sizes."""




def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """Run the case ``args.case`` at one point (``args.batch[0]`` etc.) in this process and return its record."""
    torch.manual_seed(0)
    build, description = CASES[args.case]
    module, data, timer, trainer_args, images = build(args, args.warmup + args.steps)
    flops = FlopCount()
    per_batch = isinstance(timer, StepTimer) and not timer.per_epoch
    # FLOPs on a GPU only: counting under FlopCounterMode keeps a checkpointed network's activations alive, and a CPU
    # process's peak RSS, unlike a GPU's peak, cannot be reset after the warm-up step that counts them
    count_flops = per_batch and args.warmup > 0 and args.compile is None and torch.device(args.device).type == "cuda"
    # kernels on the last warm-up batch, after the FLOPs' (one dispatch mode at a time)
    kernels = KernelCount(index=args.warmup - 1)
    count_kernels = per_batch and args.warmup > count_flops and args.compile is None
    callbacks = [timer] + [flops] * count_flops + [kernels] * count_kernels
    callbacks += [ChannelsLast()] * args.channels_last + ([Compiled(args.compile)] if args.compile else [])
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            **{"max_epochs": 1, "limit_val_batches": 0, **trainer_args},
            accelerator=torch.device(args.device).type,
            devices=1,
            precision="bf16-mixed" if args.bf16 else "32-true",
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=root,
        )
        trainer.fit(module, datamodule=data)
    record = result(args, description, timer.times, images, flops.flops, kernels.dispatch)
    if not args.case.startswith("darts_"):  # only the DARTS cases are built at --C and --layers
        record.update(C=None, layers=None)
    return record
