"""Random search with parameter sharing: each step trains the supernet along one drawn path only; the derivation
scores every candidate on the same held-out images and keeps the best (a planted score picks the planted path); a
tiny search writes its NAS-Bench-201 cell; a search without held-out images stops before training."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.nb201 import NB201Architecture
from lightning_nas.strategies.rsps import RSPS
from lightning_nas.strategies.shared_weights import heldout_accuracy

TINY = dict(in_chans=1, C=2, layers=3, eval_samples=6, eval_batches=2)


def trainer(root: Path, epochs: int = 1, batches: int = 2, **options) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, limit_train_batches=batches,
                      limit_val_batches=0, default_root_dir=root, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, **options)


def test_tiny_search_writes_its_best_candidate_as_a_benchmark_cell(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = RSPS(**TINY)
    trainer(tmp_path, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)]).fit(
        model, DigitsDataModule(mode="search", val_split=100, batch_size=16))
    text = (tmp_path / "ckpt" / "genotype.json").read_text()
    assert set(json.loads(text)) == {"arch"} and NB201Architecture.from_json(text) == model.genotype()
    assert len(model.scores) == 6
    best_path, best_score = max(model.scores, key=lambda row: row[1])
    assert model.genotype() == model.search_space.decode(best_path)
    for _, score in model.scores:  # a count out of the 2 x 16 images of the first two held-out batches
        assert score * 32 == pytest.approx(round(score * 32), abs=1e-4)
    paths = [path for path, _ in model.scores]
    rescored = heldout_accuracy(model, model.supernet, paths, model.accuracy, batches=2).tolist()
    assert rescored == [score for _, score in model.scores]  # BN on batch statistics, buffers restored: repeatable
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)  # saved after the derivation
    restored = RSPS(**TINY)
    restored.on_load_checkpoint(checkpoint)
    assert restored.genotype() == model.genotype() and restored.scores == model.scores


class RecordingRSPS(RSPS):
    """RSPS that keeps the paths its training steps draw."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.drawn: list[tuple[int, ...]] = []

    def sample_path(self) -> tuple[int, ...]:
        self.drawn.append(super().sample_path())
        return self.drawn[-1]


def test_a_step_trains_only_the_drawn_path(tmp_path: Path) -> None:
    """One SGD step (no momentum, no weight decay): the edges' ops off the path keep their weights, α never changes,
    the weights every path shares (stem, reductions, classifier) move."""
    pl.seed_everything(0)
    model = RecordingRSPS(**TINY, momentum=0.0, weight_decay=0.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer(tmp_path, max_steps=1).fit(model, DigitsDataModule(mode="search", val_split=100, batch_size=16))
    (path,) = model.drawn
    moved = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    off_path = set()
    for name in before:  # supernet.cells.<layer>.<edge>.ops.<op>...
        parts = name.split(".")
        if "ops" in parts and int(parts[parts.index("ops") + 1]) != path[int(parts[3])]:
            off_path.add(name)
    assert off_path and not moved & off_path
    assert "supernet.alpha" not in moved and {"supernet.classifier.weight", "supernet.stem.0.weight"} <= moved


class PlantedRSPS(RSPS):
    """RSPS whose candidates are the planted path among 19 of its one-edit neighbours and whose scoring is planted:
    1 for the planted path, else half the fraction of its edges that agree with the planted one."""

    planted = (3, 1, 0, 4, 2, 3)

    def candidates(self) -> list[tuple[int, ...]]:
        space = self.search_space
        neighbours = [space.decisions(arch) for arch in space.neighbours(space.decode(self.planted))][:19]
        return neighbours[:7] + [self.planted] + neighbours[7:]

    def accuracy(self, path: tuple[int, ...], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        agree = sum(a == b for a, b in zip(path, self.planted)) / len(path)
        return torch.tensor(1.0 if path == self.planted else 0.5 * agree)


def test_derivation_picks_the_planted_best_path(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = PlantedRSPS(**TINY)
    trainer(tmp_path).fit(model, DigitsDataModule(mode="search", val_split=100, batch_size=16))
    assert model.genotype() == model.search_space.decode(PlantedRSPS.planted)
    assert [score for _, score in model.scores] == pytest.approx([0.5 * 5 / 6] * 7 + [1.0] + [0.5 * 5 / 6] * 12)


def test_a_space_without_a_shared_child_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="^the darts space has no shared child, which ENAS and RSPS train along one "
                                          "architecture at a time; spaces that have one: .*nb201"):
        RSPS(space="darts", **TINY)


def test_search_without_heldout_images_stops_before_training(tmp_path: Path) -> None:
    fit = trainer(tmp_path)
    with pytest.raises(ConfigError, match="data.val_split=0: RSPS scores its candidates on held-out"):
        fit.fit(RSPS(**TINY), DigitsDataModule(mode="search", val_split=0, batch_size=16))
    assert fit.global_step == 0
