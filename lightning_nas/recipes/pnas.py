"""PNAS search recipe: ``python -m lightning_nas.recipes.pnas fit --config recipes/pnas_digits.yaml [--K=8 ...]``.

The search is many Trainer fits driven by ``PNASSearch`` rather than one ``fit()``, so this recipe uses jsonargparse
directly instead of LightningCLI; it keeps the same ``fit --config`` / ``--key=value`` / ``--print_config`` usage.
For parallel candidate training launch it with e.g. ``torchrun --nproc_per_node=2 -m lightning_nas.recipes.pnas ...``.
``--logger=WandbLogger --logger.project=<name>`` (or any Lightning logger) tracks the search as one run.
Bad arguments (K 0, empty ops, ...) and a missing dataset end with one line ``error: ...`` and exit status 1, before
any data is loaded or any candidate trained.
"""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.data import NASDataModule
from lightning_nas.genotypes import Genotype
from lightning_nas.recipes.cli import one_line_errors
from lightning_nas.strategies.pnas import PNASSearch


def main(args: list[str] | None = None) -> Genotype:
    fit = ArgumentParser(description="Progressive Neural Architecture Search")
    fit.add_argument("--config", action=ActionConfigFile)
    fit.add_class_arguments(PNASSearch, skip={"data"})
    fit.add_subclass_arguments(NASDataModule, "data")
    parser = ArgumentParser(description=__doc__)
    subcommands = parser.add_subcommands()
    subcommands.add_subcommand("fit", fit, help="run or resume a PNAS search")
    config = parser.parse_args(args)
    with one_line_errors():
        search = parser.instantiate(config).fit
        search.pop("config", None)
        return PNASSearch(**search).run()


if __name__ == "__main__":
    main()
