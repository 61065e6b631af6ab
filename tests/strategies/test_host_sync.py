"""Steps with no host synchronisation (issue 38): each step kind, counted with speed.dispatch.DispatchCount on the CPU,
reads no value on the host, the non-finite guard reads one after the step, and a step with one ``.item()`` counts
one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.speed.dispatch import DispatchCount
from lightning_nas.strategies.darts import DARTS
from lightning_nas.strategies.enas import ENAS
from lightning_nas.strategies.final_training import FinalTraining

STEPS = 2


def counted(function: Callable[..., Any], counts: list[DispatchCount]) -> Callable[..., Any]:
    """``function``, each call counted."""

    def call(*args: Any, **kwargs: Any) -> Any:
        with DispatchCount() as count:
            result = function(*args, **kwargs)
        counts.append(count)
        return result

    return call


def fit(tmp_path: Path, module: pl.LightningModule, data: DigitsDataModule, **kwargs: Any) -> None:
    torch.manual_seed(0)
    pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=STEPS, limit_val_batches=0,
               logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=tmp_path, **kwargs).fit(module, data)


def darts(**kwargs: Any) -> DARTS:
    return DARTS(num_classes=10, in_chans=1, C=4, layers=3, nodes=2, **kwargs)


SEARCH = DigitsDataModule(mode="search", batch_size=16)


@pytest.mark.parametrize("options", [{}, {"unrolled": True}, {"arch_warmup_epochs": 1}],
                         ids=["first order", "second order", "w step only"])
def test_darts_search_step_reads_nothing_on_the_host(tmp_path: Path, options: dict[str, Any]) -> None:
    module = darts(**options)
    steps: list[DispatchCount] = []
    module.search_step = counted(module.search_step, steps)  # type: ignore[method-assign]
    training_steps: list[DispatchCount] = []
    module.training_step = counted(module.training_step, training_steps)  # type: ignore[method-assign]
    fit(tmp_path, module, SEARCH)
    assert [count.total_syncs for count in steps] == [0] * STEPS
    assert all(count.kernels > 100 for count in steps)
    # after the step, the guard reads its two flags at once
    assert [dict(count.syncs) for count in training_steps] == [{"tolist": 1}] * STEPS


def test_enas_child_step_reads_nothing_on_the_host(tmp_path: Path) -> None:
    module = ENAS(in_chans=1, C=4, num_layers=3, controller_steps=1, controller_aggregate=1, derive_samples=2,
                  lstm_size=8)
    module.controller_phase = lambda: None  # type: ignore[method-assign]  # the child steps alone
    steps: list[DispatchCount] = []
    module.child_step = counted(module.child_step, steps)  # type: ignore[method-assign]
    fit(tmp_path, module, DigitsDataModule(val_split=16, batch_size=16))
    assert [count.total_syncs for count in steps] == [0] * STEPS


class ReadsTheLoss(FinalTraining):
    """The negative control: a training step that reads its loss on the host once."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.print_loss = loss.item()
        return loss


@pytest.mark.parametrize(("module_class", "syncs"), [(FinalTraining, 0), (ReadsTheLoss, 1)])
def test_final_training_step_reads_nothing_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module_class: type[FinalTraining], syncs: int
) -> None:
    """Lightning's optimizer step runs the whole step: training_step, backward, gradient clipping and the update
    (FinalTraining.optimizer_step checks the loss after it)."""
    steps: list[DispatchCount] = []
    monkeypatch.setattr(pl.LightningModule, "optimizer_step", counted(pl.LightningModule.optimizer_step, steps))
    fit(tmp_path, module_class(C=4, layers=3, num_classes=10, in_chans=1), DigitsDataModule(batch_size=16),
        gradient_clip_val=5.0)
    assert [count.total_syncs for count in steps] == [syncs] * STEPS
    if syncs:
        assert steps[0].syncs == {"_local_scalar_dense": 1}
