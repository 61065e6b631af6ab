"""FinalTraining: the loss with its auxiliary term, the drop path and lr schedules, NaN stops, exact resume, and other
spaces' architectures in the networks their spaces build."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import published_genotypes
from lightning_nas.networks.nb201 import NB201Network
from lightning_nas.spaces import create_space
from lightning_nas.spaces.enas_macro import MacroArchitecture, MacroNetwork
from lightning_nas.strategies.final_training import FinalTraining

TINY = {"C": 4, "layers": 3, "num_classes": 10, "in_chans": 1}


def tiny_model(**kwargs) -> FinalTraining:
    return FinalTraining(**(TINY | kwargs))


def trainer(tmp_path: Path, max_epochs: int, **kwargs) -> pl.Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": max_epochs,
        "default_root_dir": tmp_path,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "deterministic": True,
    }
    return pl.Trainer(**(options | kwargs))


class Record(pl.Callback):
    """What the module set at the start of each epoch: the drop path rate of every cell and the lr."""

    def __init__(self) -> None:
        self.drop_path: list[set[float]] = []
        self.lr: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.drop_path.append({cell.drop_path.drop_prob for cell in pl_module.network.cells})
            self.lr.append(float(trainer.optimizers[0].param_groups[0]["lr"]))  # a tensor the schedule writes into


def test_auxiliary_weight_adds_weighted_auxiliary_loss() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    with_aux = tiny_model(auxiliary_weight=0.4, drop_path_prob=0.0)
    without = tiny_model(auxiliary_weight=0.0, drop_path_prob=0.0)
    missing, unexpected = without.load_state_dict(with_aux.state_dict(), strict=False)
    assert not missing and unexpected and all(key.startswith("network.aux_head.") for key in unexpected)
    logits, aux_logits = with_aux.network.forward_with_aux(x)

    loss_with, _ = with_aux.loss(x, y)
    loss_without, _ = without.loss(x, y)

    torch.testing.assert_close(loss_without, F.cross_entropy(logits, y))
    torch.testing.assert_close(loss_with - loss_without, 0.4 * F.cross_entropy(aux_logits, y))
    assert (loss_with - loss_without).item() > 0.1


def test_label_smoothing_applies_to_both_heads() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    model = tiny_model(auxiliary_weight=0.5, drop_path_prob=0.0, label_smoothing=0.1)
    logits, aux_logits = model.network.forward_with_aux(x)
    expected = F.cross_entropy(logits, y, label_smoothing=0.1)
    expected = expected + 0.5 * F.cross_entropy(aux_logits, y, label_smoothing=0.1)
    torch.testing.assert_close(model.loss(x, y)[0], expected)


def test_top5_only_with_more_than_five_classes() -> None:
    assert set(tiny_model().eval_accuracy["val"]) == {"val/top1", "val/top5"}
    assert set(tiny_model(num_classes=5).eval_accuracy["val"]) == {"val/top1"}


def test_drop_path_and_cosine_lr_follow_the_epoch(tmp_path: Path) -> None:
    record = Record()
    model = tiny_model(drop_path_prob=0.2, lr=0.1, scheduler="cosine", eta_min=0.001)
    trainer(tmp_path, 4, limit_train_batches=1, limit_val_batches=0, callbacks=[record]).fit(model, DigitsDataModule())

    assert record.drop_path == [{0.0}, {0.05}, {0.1}, {0.15000000000000002}]
    expected_lr = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    assert record.lr == pytest.approx(expected_lr)


def test_exponential_lr_decays_per_epoch(tmp_path: Path) -> None:
    record = Record()
    model = tiny_model(lr=0.1, scheduler="exponential", gamma=0.97)
    trainer(tmp_path, 3, limit_train_batches=2, limit_val_batches=0, callbacks=[record]).fit(model, DigitsDataModule())
    assert record.lr == pytest.approx([0.1, 0.097, 0.09409])


def test_nan_loss_stops_naming_the_step(tmp_path: Path) -> None:
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    x[8:12] = float("nan")  # the third batch of 4
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    with pytest.raises(FloatingPointError, match=r"^train/loss is nan in epoch 0, step 2 \(training\); lower the"):
        trainer(tmp_path, 1).fit(tiny_model(), loader)


def test_checkpoint_rebuilds_the_genotype_with_weights_only(tmp_path: Path) -> None:
    genotype = published_genotypes()["ENAS"]
    model = tiny_model(genotype=genotype.to_dict())
    fit = trainer(tmp_path, 1, limit_train_batches=1, limit_val_batches=0)
    fit.fit(model, DigitsDataModule())
    fit.save_checkpoint(tmp_path / "model.ckpt")

    loaded = FinalTraining.load_from_checkpoint(tmp_path / "model.ckpt", weights_only=True)
    assert loaded.genotype == genotype
    loaded_state = loaded.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded_state[key]), key


@pytest.mark.slow
def test_learns_digits(tmp_path: Path) -> None:
    pl.seed_everything(0)
    data = DigitsDataModule(batch_size=64)
    model = tiny_model(C=6, layers=4, lr=0.05)
    fit = trainer(tmp_path, 3, limit_val_batches=0)
    before = fit.test(model, data, verbose=False)[0]
    fit.fit(model, data)
    after = fit.test(model, data, verbose=False)[0]
    assert after["test/loss"] < before["test/loss"] - 1.0
    assert after["test/top1"] > 0.6  # chance is 0.1


@pytest.mark.slow
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path, stop_after_epoch) -> None:
    """Drop path, augmentation, momentum and the lr schedule all carry state or randomness across epochs."""

    def run(folder: str, callbacks: list[pl.Callback], ckpt_path: Path | None = None) -> FinalTraining:
        pl.seed_everything(0)
        model = tiny_model(drop_path_prob=0.3)
        checkpoint = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        fit = trainer(tmp_path, 3, limit_train_batches=3, limit_val_batches=1, enable_checkpointing=True,
                      callbacks=[checkpoint, *callbacks])
        fit.fit(model, DigitsDataModule(batch_size=16), ckpt_path=ckpt_path)
        return model

    uninterrupted = run("uninterrupted", [])
    interrupted = run("interrupted", [stop_after_epoch(1)])
    assert interrupted.current_epoch == 2  # stopped after epochs 0 and 1
    resumed = run("resumed", [], ckpt_path=tmp_path / "interrupted" / "last.ckpt")

    assert resumed.global_step == uninterrupted.global_step == 9
    interrupted_state = interrupted.state_dict()
    differs = [
        key for key, value in uninterrupted.state_dict().items() if not torch.equal(value, interrupted_state[key])
    ]
    assert differs, "the interrupted run must differ, or the comparison below proves nothing"
    resumed_state = resumed.state_dict()
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed_state[key]), key


def test_ema_weights_are_validated_and_kept(tmp_path: Path) -> None:
    """With Lightning's EMA callback the epoch's validation runs on the averaged weights, which the module holds
    after fit; the checkpoint keeps the raw weights beside them for resuming."""
    pl.seed_everything(0)
    model = tiny_model(lr=0.1)
    callbacks = [EMAWeightAveraging(decay=0.5), ModelCheckpoint(dirpath=tmp_path, save_last=True)]
    fit = trainer(tmp_path, 1, limit_train_batches=4, enable_checkpointing=True, callbacks=callbacks)
    fit.fit(model, DigitsDataModule(batch_size=32))
    logged = {key: value.item() for key, value in fit.callback_metrics.items() if key.startswith("val/")}

    (validated,) = fit.validate(model, DigitsDataModule(batch_size=32), verbose=False)
    assert validated == pytest.approx(logged, abs=1e-6)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    raw, averaged = checkpoint["current_model_state"], checkpoint["state_dict"]
    assert all(torch.equal(averaged[key], value) for key, value in model.state_dict().items())
    assert not torch.equal(raw["network.classifier.weight"], averaged["network.classifier.weight"])


NB201_CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
OTHER_SPACE = TINY | {"auxiliary_weight": 0.0, "drop_path_prob": 0.0}


def test_the_space_is_created_with_the_options_its_search_had_and_checks_the_architecture_against_them() -> None:
    """A cell the search's ops could not have written is refused in one line; within them it trains, and the options
    stay in the hyperparameters, so a checkpoint rebuilds the same space."""
    searched = ["nor_conv_1x1", "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none"]
    model = FinalTraining(NB201_CELL, space="nb201", ops=searched, **OTHER_SPACE)
    assert model.search_space.ops == tuple(searched) and model.hparams["ops"] == searched
    with pytest.raises(ConfigError, match=r"uses avg_pool_3x3, outside this space's ops nor_conv_1x1, nor_conv_3x3, "
                                          r"skip_connect, none$"):
        FinalTraining(NB201_CELL, space="nb201", ops=[op for op in searched if op != "avg_pool_3x3"], **OTHER_SPACE)


def test_another_space_trains_its_built_network_with_plain_cross_entropy() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    model = FinalTraining(NB201_CELL, space="nb201", label_smoothing=0.1, **OTHER_SPACE)
    assert isinstance(model.network, NB201Network) and str(model.genotype) == NB201_CELL
    loss, logits = model.loss(x, y)
    torch.testing.assert_close(logits, model.network(x))
    torch.testing.assert_close(loss, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_another_space_checkpoint_rebuilds_its_network_and_exports_it(tmp_path: Path) -> None:
    """Two epochs of an NB201 cell (drop path is left alone: the network has none), saved, loaded with
    ``weights_only``, and taken out as the plain network its space builds."""
    pl.seed_everything(0)
    model = FinalTraining(NB201_CELL, space="nb201", **OTHER_SPACE)
    fit = trainer(tmp_path, 2, limit_train_batches=2, limit_val_batches=1)
    fit.fit(model, DigitsDataModule(batch_size=16))
    fit.save_checkpoint(tmp_path / "model.ckpt")

    loaded = FinalTraining.load_from_checkpoint(tmp_path / "model.ckpt", weights_only=True).eval()
    assert loaded.hparams["space"] == "nb201" and loaded.genotype == model.genotype
    exported = loaded.timm_model()
    assert type(exported) is NB201Network and not exported.training
    x = torch.stack([DigitsDataModule().make_test_set()[i][0] for i in range(4)])
    torch.testing.assert_close(exported(x), model.eval()(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_an_enas_macro_architecture_from_a_config_dict() -> None:
    """A YAML config gives the architecture as a mapping: the space's JSON form."""
    arch = MacroArchitecture.uniform(3, torch.Generator().manual_seed(1))
    model = FinalTraining(arch.to_dict(), space="enas_macro", **OTHER_SPACE)
    assert isinstance(model.network, MacroNetwork) and model.network.arch == arch
    assert model.hparams["genotype"] == arch.to_dict()
    assert (sum(p.numel() for p in model.network.parameters())
            == create_space("enas_macro").num_params(arch, 10, 1, C=4))


def test_darts_style_cells_of_other_spaces_keep_the_published_network() -> None:
    """enas_micro and pnas architectures are genotypes: they stack into nas_cifar with its auxiliary head."""
    for space, name in (("enas_micro", "ENAS"), ("pnas", "PNASNet")):
        model = tiny_model(genotype=name, space=space)
        assert model.genotype == published_genotypes()[name]
        assert model.network.aux_head is not None
        assert model.network.num_parameters() == tiny_model(genotype=name).network.num_parameters()
