"""Lightning callbacks usable in any project: genotype export and logging, weight inheritance, early termination."""

from lightning_nas.callbacks.genotype_export import GenotypeExport, run_directory

__all__ = ["GenotypeExport", "run_directory"]
