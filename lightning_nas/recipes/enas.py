"""ENAS search: ``python -m lightning_nas.recipes.enas fit --config recipes/enas_digits.yaml``.

``--model.space`` names any registered space with a shared child: ``enas_micro`` (the default), ``enas_macro``,
``nb201``. ``recipes/enas_micro_cifar10.yaml`` and ``recipes/enas_macro_cifar10.yaml`` are the authors' searches. The
derived architecture is written to ``genotype.json`` next to the checkpoints: a micro search's is a Genotype for
``lightning_nas.recipes.train``; a macro search's is a MacroArchitecture for
``lightning_nas.spaces.enas_macro.MacroNetwork``. Bad arguments end with one line ``error: ...`` before training.
``--trainer.strategy ddp`` runs as ``ddp_find_unused_parameters_true``: each architecture uses a subset of the child.
"""

from __future__ import annotations

from lightning.pytorch.strategies import StrategyRegistry

from lightning_nas.recipes.cli import NASCLI, run_recipe
from lightning_nas.recipes.errors import one_line_errors
from lightning_nas.strategies.enas import ENAS


def with_unused_parameters(strategy: object) -> object:
    """The ``..._find_unused_parameters_true`` variant of a DDP strategy named without that suffix, else ``strategy``.

    DDP otherwise waits forever for gradients of the child's weights the sampled architecture did not use."""
    variant = f"{strategy}_find_unused_parameters_true"
    return variant if isinstance(strategy, str) and variant in StrategyRegistry else strategy


class ENASCLI(NASCLI):
    """The recipes' CLI, choosing the DDP strategy ENAS needs by itself."""

    def before_instantiate_classes(self) -> None:
        trainer = (self.config[self.subcommand] if self.subcommand else self.config).trainer
        trainer.strategy = with_unused_parameters(trainer.strategy)


def main(args: list[str] | None = None, run: bool = True) -> NASCLI:
    """``run=False`` only parses and instantiates (no subcommand in ``args``)."""
    with one_line_errors():
        return run_recipe(ENAS, args, run=run, cli_class=ENASCLI)


if __name__ == "__main__":
    main()
