"""Every family's final network under one import path, registered with timm on import (``nas_cifar``,
``nas_imagenet``, ``nb201``): the classes live with their family (``spaces/darts/network.py``,
``spaces/nb201/network.py``), their timm default configs and entry points here."""

from lightning_nas.networks.nb201 import NB201Network, nb201
from lightning_nas.networks.stacked import (
    AuxiliaryHead,
    NetworkCIFAR,
    NetworkImageNet,
    StackedCellNetwork,
    nas_cifar,
    nas_imagenet,
)

__all__ = ["AuxiliaryHead", "NB201Network", "NetworkCIFAR", "NetworkImageNet", "StackedCellNetwork", "nas_cifar",
           "nas_imagenet", "nb201"]
