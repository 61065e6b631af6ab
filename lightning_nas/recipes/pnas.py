"""PNAS search recipe: ``python -m lightning_nas.recipes.pnas fit --config recipes/pnas_digits.yaml [--K=8 ...]``.

The search is many Trainer fits driven by ``PNASSearch`` rather than one ``fit()`` (see ``driver``).
For parallel candidate training launch it with e.g. ``torchrun --nproc_per_node=2 -m lightning_nas.recipes.pnas ...``.
``--logger=WandbLogger --logger.project=<name>`` (or any Lightning logger) tracks the search as one run.
Bad arguments (K 0, empty ops, ...) and a missing dataset end with one line ``error: ...`` and exit status 1, before
any data is loaded or any candidate trained.
"""

from __future__ import annotations

from lightning_nas.genotypes import Genotype
from lightning_nas.recipes.driver import run_driver
from lightning_nas.strategies.pnas import PNASSearch


def main(args: list[str] | None = None) -> Genotype:
    return run_driver(PNASSearch, "Progressive Neural Architecture Search", args)


if __name__ == "__main__":
    main()
