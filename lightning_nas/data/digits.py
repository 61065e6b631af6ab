"""The embedded dataset: scikit-learn's handwritten digits (1,797 real 8x8 grey images, 10 classes).

It ships inside scikit-learn, so the quick start and the tests run offline with no download. The first 1,500
images train, the last 297 test (a fixed split, as the images come ordered by writer).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lightning_nas.data.base import NASDataModule

NUM_TRAIN = 1500


class DigitsDataset(Dataset):
    """Digit images as float tensors in [0, 1] of shape (1, 8, 8), with an optional tensor transform."""

    def __init__(self, train: bool, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        part = slice(None, NUM_TRAIN) if train else slice(NUM_TRAIN, None)
        self.images, self.labels = images[part], labels[part]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


class DigitsDataModule(NASDataModule):
    """scikit-learn digits in the eval and search modes of every lightning_nas data module."""

    num_classes = 10
    input_size = (1, 8, 8)
    mean = (0.3,)
    std = (0.4,)

    def _transform(self, train: bool) -> v2.Compose:
        augment = [v2.RandomCrop(8, padding=1)] if train else []
        return v2.Compose([*augment, v2.Normalize(self.mean, self.std)])

    def make_train_set(self, train: bool) -> Dataset:
        return DigitsDataset(train=True, transform=self._transform(train))

    def make_test_set(self) -> Dataset:
        return DigitsDataset(train=False, transform=self._transform(False))
