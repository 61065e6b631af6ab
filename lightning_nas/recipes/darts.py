"""DARTS search: ``python -m lightning_nas.recipes.darts fit --config recipes/darts_digits.yaml``.

``recipes/darts_cifar10.yaml`` is the paper's search; add ``--model.unrolled true`` for second order. The derived
genotype is written to ``genotype.json`` next to the checkpoints; train it with ``lightning_nas.recipes.train``.
"""

from __future__ import annotations

from lightning_nas.recipes.cli import run_recipe
from lightning_nas.recipes.errors import one_line_errors
from lightning_nas.strategies.darts import DARTS


def main(args: list[str] | None = None) -> None:
    with one_line_errors():
        run_recipe(DARTS, args)


if __name__ == "__main__":
    main()
