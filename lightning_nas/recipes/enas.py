"""ENAS search: ``python -m lightning_nas.recipes.enas fit --config recipes/enas_digits.yaml``.

``recipes/enas_micro_cifar10.yaml`` and ``recipes/enas_macro_cifar10.yaml`` are the authors' searches. The derived
architecture is written to ``genotype.json`` next to the checkpoints: a micro search's is a Genotype for
``lightning_nas.recipes.train``; a macro search's is a MacroArchitecture for
``lightning_nas.spaces.enas_macro.MacroNetwork``.
"""

from __future__ import annotations

from lightning_nas.recipes.cli import NASCLI, run_recipe
from lightning_nas.strategies.enas import ENAS


def main(args: list[str] | None = None) -> NASCLI:
    return run_recipe(ENAS, args)


if __name__ == "__main__":
    main()
