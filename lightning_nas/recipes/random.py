"""Random-search baseline recipe: ``python -m lightning_nas.recipes.random fit --config recipes/random_digits.yaml``.

Like the PNAS recipe it drives many short Trainer fits, so it uses jsonargparse directly with the same ``fit
--config`` / ``--key=value`` / ``--print_config`` usage. ``--space`` picks the space (darts, enas, pnas).
"""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.data import NASDataModule
from lightning_nas.genotypes import Genotype
from lightning_nas.recipes.cli import one_line_errors
from lightning_nas.strategies.random_search import RandomSearch


def main(args: list[str] | None = None) -> Genotype:
    fit = ArgumentParser(description="Random search")
    fit.add_argument("--config", action=ActionConfigFile)
    fit.add_class_arguments(RandomSearch, skip={"data"})
    fit.add_subclass_arguments(NASDataModule, "data")
    parser = ArgumentParser(description=__doc__)
    subcommands = parser.add_subcommands()
    subcommands.add_subcommand("fit", fit, help="run or resume a random search")
    with one_line_errors():
        config = parser.parse_args(args)
        search = parser.instantiate(config).fit
        search.pop("config", None)
        return RandomSearch(**search).run()


if __name__ == "__main__":
    main()
