from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import lightning_nas.data.base
from lightning_nas.data import DigitsDataModule, NASDataModule
from lightning_nas.recipes.cli import NASCLI

NUM_TRAIN = 1500
PROBE = Path(__file__).with_name("ddp_probe.py")
REPO = Path(__file__).parents[2]


def indices(data: DigitsDataModule, name: str) -> list[int]:
    """The training-set images a split holds."""
    return list(data.split(name).indices)


def epoch_order(loader: torch.utils.data.DataLoader, epoch: int) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return list(loader.sampler)


def test_search_halves_are_disjoint_and_cover_what_is_not_held_out() -> None:
    data = DigitsDataModule(mode="search", val_split=101)
    weights, arch, heldout = indices(data, "weights"), indices(data, "arch"), indices(data, "heldout")
    assert (len(weights), len(arch), len(heldout)) == (699, 700, 101)
    assert not set(weights) & set(arch) and not set(heldout) & (set(weights) | set(arch))
    assert sorted(weights + arch + heldout) == list(range(NUM_TRAIN))


def test_the_seed_alone_decides_the_split() -> None:
    def halves(seed: int) -> tuple[list[int], list[int]]:
        data = DigitsDataModule(mode="search", val_split=100, seed=seed)
        return indices(data, "weights"), indices(data, "heldout")

    assert halves(1) == halves(1)
    assert halves(1)[0] != halves(2)[0] and halves(1)[1] != halves(2)[1]


def test_eval_mode_trains_on_all_but_the_held_out_images() -> None:
    data = DigitsDataModule(val_split=200)
    assert sorted(indices(data, "train") + indices(data, "heldout")) == list(range(NUM_TRAIN))
    assert data.val_dataloader().dataset is data.split("heldout")
    without_heldout = DigitsDataModule()
    assert without_heldout.val_dataloader().dataset is without_heldout.split("test")


def test_held_out_images_are_validated_unaugmented() -> None:
    data = DigitsDataModule(val_split=50)
    first, second = (torch.cat([x for x, _ in data.val_dataloader()]) for _ in range(2))
    assert first.shape == (50, 1, 8, 8) and torch.equal(first, second)


def test_val_split_must_leave_training_images() -> None:
    with pytest.raises(ValueError, match="val_split=1500"):
        DigitsDataModule(val_split=NUM_TRAIN).setup()


def test_shuffle_is_a_function_of_seed_and_epoch() -> None:
    loader = DigitsDataModule(seed=5).train_dataloader()
    orders = [epoch_order(loader, epoch) for epoch in range(3)]
    assert sorted(orders[0]) == list(range(NUM_TRAIN))
    assert orders[0] != orders[1] != orders[2]
    resumed = DigitsDataModule(seed=5).train_dataloader()  # a fresh module, as after a restart, at epoch 2
    assert epoch_order(resumed, 2) == orders[2]
    assert epoch_order(DigitsDataModule(seed=6).train_dataloader(), 0) != orders[0]


def test_search_mode_yields_a_weight_batch_and_an_architecture_batch() -> None:
    data = DigitsDataModule(mode="search", batch_size=32)
    loader = data.train_dataloader()
    assert [inner.dataset for inner in loader.flattened] == [data.split("weights"), data.split("arch")]
    batch, _, _ = next(iter(loader))
    assert set(batch) == {"weights", "arch"}
    assert all(x.shape == (32, 1, 8, 8) and y.shape == (32,) for x, y in batch.values())
    assert len(loader) == 750 // 32  # steps of whole batches from the smaller half


def test_ranks_share_the_training_order_and_read_each_evaluation_image_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks simulated by their process group: the sampler arithmetic that a DDP run uses."""
    loaders = []
    for rank in range(2):
        monkeypatch.setattr(lightning_nas.data.base, "process_group", lambda rank=rank: (2, rank))
        data = DigitsDataModule(val_split=101, batch_size=32)
        loaders.append((data.train_dataloader(), data.val_dataloader(), data.test_dataloader()))
    train = [epoch_order(loader, 1) for loader, _, _ in loaders]
    assert len(train[0]) == len(train[1]) == 700  # 1,399 images padded to an equal share
    assert sorted(set(train[0]) | set(train[1])) == list(range(1399)) and len(set(train[0]) & set(train[1])) == 1
    for split in (1, 2):
        shards = [list(rank_loaders[split].sampler) for rank_loaders in loaders]
        assert sorted(shards[0] + shards[1]) == list(range(len(loaders[0][split].dataset)))  # no padding


class Classifier(pl.LightningModule):
    """The smallest model a recipe links a data module into."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.head = torch.nn.Linear(in_chans, num_classes)


@pytest.mark.parametrize(
    ("name", "fixture", "num_classes", "in_chans"),
    [
        ("DigitsDataModule", None, 10, 1),
        ("CIFAR10DataModule", "tiny_cifar10", 10, 3),
        ("ImageNetDataModule", "tiny_imagefolder", 3, 3),
    ],
)
def test_the_cli_takes_every_data_module_by_name_and_links_it_into_the_model(
    name: str,
    fixture: str | None,
    num_classes: int,
    in_chans: int,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["recipe"])
    args = ["--data", name, "--trainer.logger", "false"]
    if fixture:
        args += ["--data.data_dir", str(request.getfixturevalue(fixture))]
    cli = NASCLI(Classifier, NASDataModule, subclass_mode_data=True, args=args, run=False)
    assert type(cli.datamodule).__name__ == name
    assert (cli.model.head.out_features, cli.model.head.in_features) == (num_classes, in_chans)


@pytest.mark.slow
def test_ddp_training_and_validation_read_the_single_process_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real 2-process CPU DDP fit: Lightning keeps the module's samplers, so validation is not padded."""
    monkeypatch.syspath_prepend(str(PROBE.parent))
    import ddp_probe

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(PROBE), str(tmp_path)]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    data = DigitsDataModule(mode="search", val_split=ddp_probe.VAL_SPLIT, seed=ddp_probe.SEED)
    heldout = torch.cat([x for x, _ in data.heldout_dataloader(shuffle=False)])
    assert len(ranks[0]["val_images"]) + len(ranks[1]["val_images"]) == len(heldout) == 301
    for rank in range(2):  # rank r validates held-out images r, r + 2, r + 4, ...
        torch.testing.assert_close(ranks[rank]["val_images"], heldout[rank::2])

    for salt, half in enumerate(("weights", "arch")):
        subset = data.split(half)
        for epoch in range(ddp_probe.EPOCHS):
            order = torch.randperm(len(subset), generator=torch.Generator().manual_seed(ddp_probe.SEED + salt + epoch))
            order = torch.cat([order, order[: len(order) % 2]]).tolist()  # padded to an even count
            for rank in range(2):
                expected = [int(subset.dataset.labels[subset.indices[i]]) for i in order[rank::2]]
                assert ranks[rank]["train_labels"][epoch, half] == expected


def _first_batch(data: DigitsDataModule, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch of ``epoch`` as a trainer resumed at that epoch reads it (with worker processes)."""
    data.trainer = type("ResumedTrainer", (), {"current_epoch": epoch})()
    images, labels = next(iter(data.train_dataloader()))
    return images, labels


def test_a_loader_built_at_a_resumed_epoch_reads_that_epoch_with_the_same_augmentation() -> None:
    uninterrupted = DigitsDataModule(seed=3, num_workers=2, batch_size=16)
    loader = uninterrupted.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
        images, labels = next(iter(loader))
    resumed_images, resumed_labels = _first_batch(DigitsDataModule(seed=3, num_workers=2, batch_size=16), epoch=2)
    assert torch.equal(resumed_labels, labels)
    assert torch.equal(resumed_images, images)  # random crops drawn in the workers match too
    other_images, _ = _first_batch(DigitsDataModule(seed=3, num_workers=2, batch_size=16), epoch=1)
    assert not torch.equal(other_images, images)
