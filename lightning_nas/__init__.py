"""lightning_nas: DARTS, ENAS and PNAS as PyTorch Lightning modules, with data modules, callbacks and CLI recipes.

Layers, lowest first: ``ops`` → ``genotypes`` → ``spaces`` (each family's cells, networks, supernet and space) →
``networks`` (the final networks, registered with timm) → ``strategies`` → ``recipes``; ``data`` and ``callbacks``
sit beside them. A module never imports a higher layer (``tests/test_layers.py`` checks every import).

``import lightning_nas`` loads nothing heavy: timm alone pulls in torch, torchvision and wandb, so each layer loads on
first use, and the names below on first access. ``import lightning_nas.networks`` (which every strategy and recipe
imports) registers ``nas_cifar``, ``nas_imagenet`` and ``nb201`` with timm.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_nas.genotypes import Genotype, published_genotypes, resolve_genotype

__version__ = "0.1.0"
__all__ = ["Genotype", "published_genotypes", "resolve_genotype"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("lightning_nas.genotypes"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
