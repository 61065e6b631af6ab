"""LightningDataModules: CIFAR-10 and CIFAR-100, Fashion-MNIST and MNIST (read offline from the Debian package
``dataset-fashion-mnist`` when installed), ImageNet (ImageFolder) and the embedded scikit-learn digits."""

from lightning_nas.data.base import NASDataModule
from lightning_nas.data.cifar10 import CIFAR10DataModule, Cutout
from lightning_nas.data.digits import DigitsDataModule, DigitsDataset
from lightning_nas.data.fashion_mnist import FashionMNISTDataModule
from lightning_nas.data.imagenet import ImageNetDataModule

__all__ = [
    "CIFAR10DataModule",
    "Cutout",
    "DigitsDataModule",
    "DigitsDataset",
    "FashionMNISTDataModule",
    "ImageNetDataModule",
    "NASDataModule",
]
