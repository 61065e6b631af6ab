"""The finite check: a diverged run stops naming epoch, step and phase, and leaves the last finite checkpoint,
genotype and history as they were."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.strategies.enas import ENAS
from lightning_nas.strategies.final_training import FinalTraining
from lightning_nas.strategies.finite import check_finite, module_state


class Poison(pl.Callback):
    """Fill the module's tensor ``name`` with ``value`` before the second batch of ``epoch``, as a diverging step
    would."""

    def __init__(self, name: str, value: float, epoch: int = 1) -> None:
        self.name, self.value, self.epoch = name, value, epoch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            with torch.no_grad():
                module_state(pl_module)[self.name].fill_(self.value)


def fit(root: Path, model: pl.LightningModule, data: DigitsDataModule, poison: Poison, **kwargs) -> None:
    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, limit_train_batches=2, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_last=True), poison],
                         **kwargs)
    trainer.fit(model, data)


def test_message_names_value_epoch_step_and_phase() -> None:
    module = FinalTraining(C=2, layers=1, num_classes=3, in_chans=1)
    check_finite(module, "training", {"train/loss": torch.tensor(0.5), "weights": torch.ones(3)})
    with pytest.raises(FloatingPointError) as error:
        check_finite(module, "training", {"train/loss": torch.tensor(0.5), "val/loss": torch.tensor(float("inf"))})
    assert str(error.value) == ("val/loss is inf in epoch 0, step 0 (training); lower the learning rate or set "
                                "trainer.gradient_clip_val")
    weights = torch.ones(4)
    weights[2] = float("nan")
    with pytest.raises(FloatingPointError, match=r"^w is non-finite in epoch 0, step 0 \(controller\); lower x$"):
        check_finite(module, "controller", {"w": weights}, hint="lower x")


def test_module_state_holds_parameters_and_bn_statistics() -> None:
    state = module_state(FinalTraining(C=2, layers=1, num_classes=3, in_chans=1))
    assert "network.stem.0.weight" in state and "network.stem.1.running_var" in state
    assert len(state) == len(list(FinalTraining(C=2, layers=1, num_classes=3, in_chans=1).state_dict()))


@pytest.mark.parametrize(("val_batches", "phase"), [(1, "validation"), (0, "training epoch end")])
def test_final_training_keeps_the_last_finite_checkpoint(tmp_path: Path, val_batches: int, phase: str) -> None:
    """An infinite BN running variance leaves the training loss finite (training uses batch statistics); the state
    check stops the run before ModelCheckpoint saves it."""
    model = FinalTraining(C=4, layers=3, num_classes=10, in_chans=1)
    with pytest.raises(FloatingPointError) as error:
        fit(tmp_path, model, DigitsDataModule(batch_size=16), Poison("network.stem.1.running_var", float("inf")),
            limit_val_batches=val_batches)
    assert str(error.value).startswith(f"network.stem.1.running_var is non-finite in epoch 1, step 4 ({phase})")
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 2
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())


@pytest.mark.slow  # 5 s alone, ~30 s on a loaded 2-core machine
def test_enas_stops_before_the_step_and_keeps_genotype_history_and_checkpoint(tmp_path: Path) -> None:
    model = ENAS(in_chans=1, C=4, num_layers=3, controller_steps=1, controller_aggregate=1, derive_samples=2,
                 lstm_size=8)
    data = DigitsDataModule(val_split=16, batch_size=16)
    files = ("genotype.json", "genotype_history.jsonl", "last.ckpt")
    with pytest.raises(FloatingPointError) as error:
        fit(tmp_path, model, data, Poison("child.stem.0.weight", float("nan")), limit_val_batches=0)
    assert str(error.value).startswith("train/loss is nan in epoch 1, step 4 (child training)")  # 2 optimizers
    history = [json.loads(line) for line in (tmp_path / "ckpt" / "genotype_history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["epoch"] == 0
    assert all((tmp_path / "ckpt" / name).stat().st_size > 0 for name in files)


class NaNImages(pl.Callback):
    """Fill the images of batch ``step`` with NaN and keep the module's state as it was just before."""

    def __init__(self, step: int) -> None:
        self.step, self.before = step, {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            batch[0].fill_(float("nan"))
            self.before = {name: value.clone() for name, value in pl_module.state_dict().items()}


def test_a_nan_loss_skips_its_step_and_stops_before_a_checkpoint_every_step_sees_it(tmp_path: Path) -> None:
    """The step reads nothing on the host: the fused optimizer skips the update, the loss is checked right after it,
    before ModelCheckpoint's every-step save."""
    model = FinalTraining(C=4, layers=3, num_classes=10, in_chans=1, drop_path_prob=0.0)
    nan = NaNImages(step=3)
    every_step = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=1, save_last=True)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, limit_train_batches=2, limit_val_batches=0,
                         logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[every_step, nan])
    with pytest.raises(FloatingPointError, match=r"^train/loss is nan in epoch 1, step 3 \(training\)"):
        trainer.fit(model, DigitsDataModule(batch_size=16))
    # the parameters as before the step (the BN statistics saw the NaN batch, as before this check moved)
    assert all(torch.equal(value, nan.before[name]) for name, value in model.named_parameters())
    last = torch.load(tmp_path / "steps" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())
