"""Final networks stacked from genotypes, and NAS-Bench-201's network; importing this registers them with timm."""

from lightning_nas.networks.nb201 import NB201Network, nb201
from lightning_nas.networks.stacked import (
    AuxiliaryHead,
    NetworkCIFAR,
    NetworkImageNet,
    StackedCellNetwork,
    nas_cifar,
    nas_imagenet,
)

__all__ = ["AuxiliaryHead", "NB201Network", "NetworkCIFAR", "NetworkImageNet", "StackedCellNetwork", "nas_cifar", "nas_imagenet",
           "nb201"]
