"""The LightningCLI shared by every recipe: any NASDataModule, linked into the strategy's network."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_nas.data import NASDataModule


class NASCLI(LightningCLI):
    """Links the data module's ``num_classes`` and ``in_chans`` into the model, so a config names them once.

    ``--data`` takes any NASDataModule subclass (``--data DigitsDataModule``, ``--data CIFAR10DataModule``, ...).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")


def run_recipe(model_class: type[pl.LightningModule], args: list[str] | None = None) -> NASCLI:
    """Run a recipe's CLI: ``fit``/``validate``/``test`` subcommands, YAML configs and ``--key=value`` overrides."""
    return NASCLI(
        model_class,
        NASDataModule,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )
