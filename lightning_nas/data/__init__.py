"""LightningDataModules: CIFAR-10, ImageNet (ImageFolder) and the embedded scikit-learn digits."""

from lightning_nas.data.base import NASDataModule
from lightning_nas.data.cifar10 import CIFAR10DataModule, Cutout
from lightning_nas.data.digits import DigitsDataModule, DigitsDataset
from lightning_nas.data.imagenet import ImageNetDataModule

__all__ = [
    "CIFAR10DataModule",
    "Cutout",
    "DigitsDataModule",
    "DigitsDataset",
    "ImageNetDataModule",
    "NASDataModule",
]
