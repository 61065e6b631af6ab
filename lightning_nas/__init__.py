"""lightning_nas: DARTS, ENAS and PNAS as PyTorch Lightning modules, with data modules, callbacks and CLI recipes.

Layers, lowest first: ``ops`` → ``genotypes`` → ``cells`` / ``spaces`` → ``networks`` → ``strategies`` →
``recipes``; ``data`` and ``callbacks`` sit beside them. Importing the package registers the networks with timm.
"""

from lightning_nas import networks  # noqa: F401  (registers the timm models)
from lightning_nas.genotypes import Genotype, published_genotypes, resolve_genotype

__version__ = "0.1.0"
__all__ = ["Genotype", "published_genotypes", "resolve_genotype"]
