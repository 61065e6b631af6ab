"""Recipes for search drivers: searches made of many Trainer fits (PNAS, random search) and the quality report.

They are plain objects with ``run()``, not LightningModules, so they use jsonargparse directly instead of
LightningCLI, with the same ``[fit] --config`` / ``--key=value`` / ``--print_config`` usage.
"""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.data import NASDataModule
from lightning_nas.recipes import class_paths, program, shipped_configs
from lightning_nas.recipes.errors import (
    command_line, one_line_errors, parser_errors_in_one_line, quiet_third_party_notices,
)


def run_driver(driver: type, description: str, args: list[str] | None = None, subcommand: str | None = "fit",
               fixed: dict[str, Any] | None = None, prog: str | None = None) -> Any:
    """Parse the arguments of ``driver`` (whose ``data`` is any NASDataModule; ``--config`` a file or a shipped
    recipe's name), build it and return ``run()``'s result; bad input ends in one line ``error: ...`` before any
    work. ``subcommand`` None takes the arguments directly (``python -m lightning_nas.quality --config ...``);
    ``fixed`` are arguments the recipe sets, not options (the black-box recipe of one method: its ``method``);
    ``prog`` is the command in usage and error lines (default ``program(driver)``)."""
    with one_line_errors():
        return build_driver(driver, description, sys.argv[1:] if args is None else args, subcommand, fixed,
                            prog).run()


def build_driver(driver: type, description: str, args: list[str], subcommand: str | None = "fit",
                 fixed: dict[str, Any] | None = None, prog: str | None = None) -> Any:
    """The ``driver`` object that ``run_driver`` would run with ``args``, built but not run (the quality report
    builds a PNAS search from its recipe this way to reuse its candidate training and predictor)."""
    quiet_third_party_notices()
    fixed, prog = dict(fixed or {}), prog or program(driver)
    parser = ArgumentParser(description=description, exit_on_error=False, prog=prog)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(driver, skip={"data", *fixed})
    parser.add_subclass_arguments(NASDataModule, "data")
    if subcommand is not None:
        root = ArgumentParser(description=description, exit_on_error=False, prog=prog)
        root.add_subcommands().add_subcommand(subcommand, parser, help=f"run or resume: {description}")
        parser = root
    with parser_errors_in_one_line(command_line(prog, args, [subcommand] if subcommand else [])):
        config = parser.parse_args(class_paths(shipped_configs(args)))
        arguments = parser.instantiate(config)
    arguments = arguments[subcommand] if subcommand is not None else arguments
    arguments.pop("config", None)
    return driver(**arguments, **fixed)
