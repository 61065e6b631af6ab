"""Random-search baseline recipe: ``python -m lightning_nas.recipes.random fit --config recipes/random_digits.yaml``.

Like the PNAS recipe it drives many short Trainer fits (see ``driver``). ``--space`` picks the space (darts, enas,
pnas).
"""

from __future__ import annotations

from lightning_nas.genotypes import Genotype
from lightning_nas.recipes.driver import run_driver
from lightning_nas.strategies.random_search import RandomSearch


def main(args: list[str] | None = None) -> Genotype:
    return run_driver(RandomSearch, "Random search", args)


if __name__ == "__main__":
    main()
