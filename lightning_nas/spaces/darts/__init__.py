"""The DARTS family (Liu et al., ICLR 2019), one module per part, as in the paper: the discrete cell a final network
stacks (``cell``), the CIFAR-10 and ImageNet networks stacked from a Genotype's cells (``network``), the supernet of
mixed ops whose α DARTS learns (``supernet``) and the space itself with ``GenotypeSpace``, the base of every space of
DARTS-style cell pairs (``space``, registered as ``darts``). The architecture is a ``lightning_nas.genotypes.Genotype``
and the mixed op comes from ``spaces.oneshot`` (its names are importable from here too)."""

from lightning_nas.spaces.darts.cell import Cell
from lightning_nas.spaces.darts.network import (
    AuxiliaryHead,
    NetworkCIFAR,
    NetworkImageNet,
    StackedCellNetwork,
    check_input,
)
from lightning_nas.spaces.darts.space import DARTSSpace, GenotypeSpace, random_genotype
from lightning_nas.spaces.darts.supernet import (
    SearchCell,
    SearchNetwork,
    checkpoint_contexts,
    derive_cell,
    num_edges,
)
from lightning_nas.spaces.oneshot import (
    MixedOp,
    SharedInput,
    channel_shuffle,
    check_primitives,
    frozen,
    gumbel_hard,
    track_batch,
)

__all__ = ["AuxiliaryHead", "Cell", "DARTSSpace", "GenotypeSpace", "MixedOp", "NetworkCIFAR", "NetworkImageNet",
           "SearchCell", "SearchNetwork", "SharedInput", "StackedCellNetwork", "channel_shuffle", "check_input",
           "check_primitives", "checkpoint_contexts", "derive_cell", "frozen", "gumbel_hard", "num_edges",
           "random_genotype", "track_batch"]
