"""What a CUDA graph needs of a step: fused optimizers that skip a non-finite step on the device and take a first
gradient late, tensor learning rates that the schedules write into; DARTS's search step and final training's step
replayed as CUDA graphs (``-m gpu``, skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.strategies.cuda_graph import adam_options, fused_sgd
from lightning_nas.strategies.darts import DARTS
from lightning_nas.strategies.final_training import FinalTraining
from lightning_nas.strategies.finite import nonfinite, skip_step_if


def test_fused_sgd_steps_as_sgd_and_takes_a_late_first_gradient() -> None:
    torch.manual_seed(0)
    used, late = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(3))
    reference = [p.detach().clone().requires_grad_() for p in (used, late)]
    fused = fused_sgd([used, late], torch.tensor(0.1), momentum=0.9, weight_decay=1e-2, nesterov=True)
    plain = torch.optim.SGD(reference, 0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    for step in range(3):
        for optimizer, (first, second) in ((fused, (used, late)), (plain, reference)):
            optimizer.zero_grad()
            first.grad = torch.full((5,), step + 1.0)
            if step:  # the second parameter's first gradient comes in the second step (GDAS, ENAS)
                second.grad = torch.full((3,), -1.0)
            optimizer.step()
    assert torch.allclose(used, reference[0]) and torch.allclose(late, reference[1])


def test_loading_a_state_without_some_momentum_buffers_makes_them() -> None:
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))]
    old = torch.optim.SGD(params, 0.1, momentum=0.9)
    params[0].grad = torch.ones(2)
    old.step()  # a state with the first parameter's buffer only
    optimizer = fused_sgd(params, torch.tensor(0.1), momentum=0.9, weight_decay=0.0)
    optimizer.load_state_dict(old.state_dict())
    assert torch.equal(optimizer.state[params[0]]["momentum_buffer"], torch.ones(2))
    assert torch.equal(optimizer.state[params[1]]["momentum_buffer"], torch.zeros(2))


@pytest.mark.parametrize("make", [
    lambda p: fused_sgd(p, torch.tensor(0.1), momentum=0.9, weight_decay=3e-4),
    lambda p: torch.optim.Adam(p, torch.tensor(0.1), weight_decay=1e-3, **adam_options(torch.device("cpu"))),
], ids=["sgd", "adam"])
def test_a_non_finite_step_is_skipped_on_the_device(make) -> None:
    param = torch.nn.Parameter(torch.ones(4))
    optimizer = make([param])
    param.grad = torch.ones(4)
    skip_step_if(optimizer, nonfinite(param.grad))
    optimizer.step()
    before = param.detach().clone(), {k: v.clone() for k, v in optimizer.state[param].items()}
    param.grad = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    found = nonfinite(torch.tensor(0.5), param.grad, None)
    assert found.dtype == torch.float32 and found.item() == 1.0
    skip_step_if(optimizer, found)
    optimizer.step()
    assert torch.equal(param, before[0])
    assert all(torch.equal(value, before[1][key]) for key, value in optimizer.state[param].items())


def test_schedules_write_into_a_tensor_learning_rate() -> None:
    lr = torch.tensor(0.1)
    optimizer = fused_sgd([torch.nn.Parameter(torch.ones(1))], lr, momentum=0.9, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4, eta_min=0.001)
    schedule.step()
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.0855017856687341)


@pytest.mark.parametrize("mode", ["search", "eval"])
def test_training_batches_have_one_shape(mode: str) -> None:
    """The loaders drop the last partial batch, so a captured step's static inputs fit every batch."""
    data = DigitsDataModule(mode=mode, batch_size=64)
    data.setup("fit")
    if mode == "search":  # a CombinedLoader yields (batch, index, loader index) with both halves in the batch
        pairs = [pair for batch, *_ in data.train_dataloader() for pair in batch.values()]
    else:
        pairs = list(data.train_dataloader())
    shapes = {tuple(x.shape) for x, _ in pairs}
    assert shapes == {(64, 1, 8, 8)}


def darts(**kwargs: Any) -> DARTS:
    return DARTS(num_classes=10, in_chans=1, C=4, layers=3, nodes=2, **kwargs)


def search(tmp_path: Path, module: DARTS, accelerator: str, **kwargs: Any) -> pl.Trainer:
    torch.manual_seed(0)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_epochs=2, limit_train_batches=6, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, **kwargs)
    trainer.fit(module, DigitsDataModule(mode="search", batch_size=16))
    return trainer


def test_cuda_graph_is_refused_on_the_cpu_and_for_gdas_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cuda_graph replays the search step on one CUDA device, not on 1 x cpu "
                                          r"\(SingleDeviceStrategy\): drop --model.cuda_graph or run on one GPU"):
        search(tmp_path, darts(cuda_graph=True), "cpu")

    with pytest.raises(ConfigError, match=r"^cuda_graph replays a step whose ops are fixed: drop --model.sampler"):
        darts(cuda_graph=True, sampler="gumbel")


class NaNAt(pl.Callback):
    """NaN images in the weight batch at (epoch, step), a replayed step; keeps the parameters as they were before."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.before = epoch, step, {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.step):
            batch["weights"][0].fill_(float("nan"))
            self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("unrolled", [False, True], ids=["first order", "second order"])
def test_replayed_search_steps_match_eager_ones(tmp_path: Path, unrolled: bool) -> None:
    """An epoch of w steps only, then one with α steps: each graph warms up 3 steps, captures 1 and replays 2."""
    eager, graphed = (darts(unrolled=unrolled, arch_warmup_epochs=1, cuda_graph=g) for g in (False, True))
    graphed.load_state_dict(eager.state_dict())
    start = {name: alpha.detach().clone() for name, alpha in graphed.network.alphas().items()}
    eager_trainer = search(tmp_path / "eager", eager, "gpu")
    graphed_trainer = search(tmp_path / "graphed", graphed, "gpu")
    assert graphed._graph is not None and graphed._graph[0] and graphed._graph[1].replayed
    assert graphed_trainer.global_step == eager_trainer.global_step == 6 + 2 * 6
    for (name, expected), actual in zip(eager.named_parameters(), graphed.parameters()):
        torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-4, msg=name)
    assert all(not torch.equal(alpha.cpu(), start[name]) for name, alpha in graphed.network.alphas().items())

    nan = NaNAt(epoch=1, step=5)
    with pytest.raises(FloatingPointError, match="in the w step of epoch 1, step 5; stopped before updating"):
        search(tmp_path / "nan", darts(arch_warmup_epochs=1, cuda_graph=True), "gpu", callbacks=[nan])


def train(tmp_path: Path, module: FinalTraining, accelerator: str, **kwargs: Any) -> pl.Trainer:
    torch.manual_seed(0)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_epochs=2, limit_train_batches=6, limit_val_batches=0,
                         gradient_clip_val=5.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, **kwargs)
    trainer.fit(module, DigitsDataModule(batch_size=16))
    return trainer


def test_final_training_refuses_a_cuda_graph_on_the_cpu_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cuda_graph replays the training step on one CUDA device, not on 1 x cpu "
                                          r"\(SingleDeviceStrategy\): drop --model.cuda_graph or run on one GPU"):
        train(tmp_path, FinalTraining(C=4, layers=3, num_classes=10, in_chans=1, cuda_graph=True), "cpu")
    with pytest.raises(ConfigError, match=r"^cuda_graph replays whole steps, update included: drop "
                                          r"--trainer.accumulate_grad_batches 2"):
        train(tmp_path, FinalTraining(C=4, layers=3, num_classes=10, in_chans=1, cuda_graph=True), "cpu",
              accumulate_grad_batches=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replayed_training_steps_match_eager_ones(tmp_path: Path) -> None:
    """Two epochs, each captured anew (3 eager steps, 1 capture, 2 replays), with the Trainer's gradient clipping;
    no drop path, whose masks a graph draws from other random numbers."""
    eager, graphed = (FinalTraining(C=4, layers=3, num_classes=10, in_chans=1, drop_path_prob=0.0, cuda_graph=g)
                      for g in (False, True))
    graphed.load_state_dict(eager.state_dict())
    eager_trainer = train(tmp_path / "eager", eager, "gpu")
    graphed_trainer = train(tmp_path / "graphed", graphed, "gpu")
    assert graphed._graph is not None and graphed._graph.replayed
    assert graphed_trainer.global_step == eager_trainer.global_step == 12
    for (name, expected), actual in zip(eager.named_parameters(), graphed.parameters()):
        torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-4, msg=name)
    for name in ("train/loss", "train/top1"):
        torch.testing.assert_close(graphed_trainer.callback_metrics[name], eager_trainer.callback_metrics[name],
                                   rtol=1e-3, atol=1e-4)

    nan = NaNImages(epoch=1, step=5)
    model = FinalTraining(C=4, layers=3, num_classes=10, in_chans=1, cuda_graph=True)
    with pytest.raises(FloatingPointError, match=r"^train/loss is nan in epoch 1, step 11 \(training\)"):
        train(tmp_path / "nan", model, "gpu", callbacks=[nan])
    assert all(torch.equal(p.detach().cpu(), nan.before[n]) for n, p in model.named_parameters())


class NaNImages(pl.Callback):
    """NaN images at (epoch, step), a replayed step; keeps the parameters as they were before (on the CPU)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.before = epoch, step, {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.step):
            batch[0].fill_(float("nan"))
            self.before = {n: p.detach().cpu() for n, p in pl_module.named_parameters()}


def test_a_loaded_optimizers_lr_tensor_goes_back_to_the_device_and_the_schedule_follows_it() -> None:
    from lightning_nas.strategies.cuda_graph import lr_tensors_to

    def sgd() -> torch.optim.SGD:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=torch.tensor(0.1))

    optimizer = sgd()
    optimizer.load_state_dict(sgd().state_dict())
    assert optimizer.param_groups[0]["lr"].device.type == "cpu"  # where a loaded checkpoint puts it
    lr_tensors_to([optimizer], torch.device("meta"))  # a device the loaded tensor is not on
    assert optimizer.param_groups[0]["lr"].device.type == "meta"
    optimizer = sgd()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    lr = optimizer.param_groups[0]["lr"]
    lr_tensors_to([optimizer], torch.device("cpu"))  # already there: the same tensor stays
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) < 0.1  # the schedule writes into it in place
