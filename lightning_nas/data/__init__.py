"""LightningDataModules: CIFAR-10, ImageNet (ImageFolder) and the embedded scikit-learn digits."""

from lightning_nas.data.base import EpochShuffleSampler, NASDataModule
from lightning_nas.data.digits import DigitsDataModule, DigitsDataset

__all__ = ["DigitsDataModule", "DigitsDataset", "EpochShuffleSampler", "NASDataModule"]
