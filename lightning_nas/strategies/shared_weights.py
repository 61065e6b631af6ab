"""What the sampling one-shot strategies (ENAS, random search with parameter sharing) share: architectures drawn by a
space's sampler from torch's generator, and their accuracy on held-out images with the child's shared weights."""

from __future__ import annotations

import itertools
import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, cast

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_nas.data import NASDataModule
from lightning_nas.module_state import buffers_kept
from lightning_nas.spaces import SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]


def draw_decisions(space: SearchSpace) -> tuple[int, ...]:
    """The decisions of an architecture drawn by ``space.draw`` (uniform over the decisions unless the space draws its
    own way), seeded from torch's generator, so ``seed_everything`` and ``EpochSeeding`` fix the draws."""
    return tuple(space.decisions(space.draw(random.Random(int(torch.randint(2**62, ()))))))


@contextmanager
def scoring(child: nn.Module) -> Iterator[None]:
    """The child as it scores architectures outside training: BN on the batch's statistics (training mode, as for
    ENAS's rewards; the running statistics mix every path trained), and dropout off, so a score is a function of the
    weights alone; BN's running statistics are restored after, so scoring changes nothing a resumed run would not
    repeat."""
    training = child.training
    child.train()
    dropout = getattr(child, "dropout", None)  # the ENAS micro and macro children's; the nb201 supernet has none
    if isinstance(dropout, nn.Module):
        dropout.eval()
    try:
        with buffers_kept(child):
            yield
    finally:
        child.train(training)


@torch.no_grad()
def heldout_accuracy(module: pl.LightningModule, child: nn.Module, archs: Sequence[Any],
                     accuracy: Callable[[Any, Batch], torch.Tensor], batches: int | None) -> torch.Tensor:
    """Each architecture's ``accuracy(arch, batch)`` on the same held-out images of ``module``'s data module: the
    first ``batches`` batches in their fixed order, or all of them (under DDP each rank scores its share; counts are
    summed), ``child`` in ``scoring`` mode."""
    loader = cast(NASDataModule, getattr(module.trainer, "datamodule")).heldout_dataloader(shuffle=False)
    correct = torch.zeros(len(archs), device=module.device)
    seen = torch.zeros((), device=module.device)
    with scoring(child):
        for x, y in itertools.islice(loader, batches):
            batch = x.to(module.device), y.to(module.device)
            correct += torch.stack([accuracy(arch, batch) for arch in archs]) * len(y)
            seen += len(y)
    strategy = module.trainer.strategy
    return strategy.reduce(correct, reduce_op="sum") / strategy.reduce(seen, reduce_op="sum")
