"""Lightning callbacks usable in any project: genotype export and logging, weight inheritance, early termination,
DARTS+ early stopping, per-epoch seeding for exact resume."""

from lightning_nas.callbacks.darts_early_stopping import DARTSEarlyStopping
from lightning_nas.callbacks.early_termination import MedianStopping
from lightning_nas.callbacks.epoch_seeding import EpochSeeding
from lightning_nas.callbacks.genotype_export import GenotypeExport
from lightning_nas.callbacks.genotype_logger import GenotypeLogger
from lightning_nas.callbacks.weight_inheritance import WeightInheritance

__all__ = [
    "DARTSEarlyStopping",
    "EpochSeeding",
    "GenotypeExport",
    "GenotypeLogger",
    "MedianStopping",
    "WeightInheritance",
]
