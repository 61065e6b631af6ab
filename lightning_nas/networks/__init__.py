"""Final networks stacked from genotypes; importing this registers them with timm."""

from lightning_nas.networks.stacked import (
    AuxiliaryHead,
    NetworkCIFAR,
    NetworkImageNet,
    StackedCellNetwork,
    nas_cifar,
    nas_imagenet,
)

__all__ = ["AuxiliaryHead", "NetworkCIFAR", "NetworkImageNet", "StackedCellNetwork", "nas_cifar", "nas_imagenet"]
