"""The LightningCLI shared by every recipe: any NASDataModule, linked into the strategy's network; checkpoints
written atomically, each run in a version folder of its own with its resolved config."""

from __future__ import annotations

import errno
import os
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any, cast

from jsonargparse import Namespace

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from lightning_nas.checkpoint_io import AtomicCheckpointIO
from lightning_nas.data import NASDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.files import absolute, join, write_atomic
from lightning_nas.recipes import class_paths, program, shipped_configs
from lightning_nas.recipes.errors import (
    command_line, parser_error_line, parser_errors_in_one_line, quiet_third_party_notices, user_error,
)
from lightning_nas.recipes.resume import continue_in_checkpoint_folder, last_checkpoint, other_strategy_message
from lightning_nas.run_folder import DropUnusedRunFolder, claim_version, lock_run_folder, run_directory


WANDB_CONFIG_FILE = "lightning_config.yaml"
"""The run config's name among a W&B run's files."""

UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
"""The errors of a folder the run cannot write to: permissions, a read-only or full filesystem."""


class SaveRunConfig(SaveConfigCallback):
    """Store the resolved config with its run: ``config.yaml`` next to the run's checkpoints (one per run, also
    when many runs share a save_dir, as W&B sweeps do; through fsspec like every run output), and in the W&B run: its
    config under ``cli`` and its files as ``WANDB_CONFIG_FILE`` (W&B keeps ``config.yaml`` for its own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Deferred to ``on_fit_start``, when the checkpoint folder of this run is known."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        write_atomic(join(run_directory(trainer), self.config_filename), text)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run.config.update({"cli": text}, allow_val_change=True)
                path = write_atomic(os.path.join(run.dir, WANDB_CONFIG_FILE), text)
                run.save(path, base_path=run.dir, policy="now")


STEPS = {"fit": "training_step", "validate": "validation_step", "test": "test_step", "predict": "predict_step"}
"""The LightningModule step each Trainer subcommand runs."""


def offered_subcommands(model_class: type[pl.LightningModule]) -> dict[str, set[str]]:
    """The Trainer subcommands (and the arguments Lightning fills in) whose step ``model_class`` implements."""
    return {name: arguments for name, arguments in LightningCLI.subcommands().items()
            if getattr(model_class, STEPS[name]) is not getattr(pl.LightningModule, STEPS[name])}


class NASCLI(LightningCLI):
    """Links the data module's ``num_classes`` and ``in_chans`` into the model, so a config names them once.

    ``--data`` takes any NASDataModule subclass (``--data DigitsDataModule``, ``--data CIFAR10DataModule``, ...).
    Checkpoints are written atomically beside their target (``AtomicCheckpointIO``). Only the subcommands whose step
    the strategy implements are offered (a search has no test or predict step). ``--ckpt_path last`` resumes the last
    run of the same ``default_root_dir``: each run gets a version folder of its own, where Lightning would look.
    """

    @property
    def strategy(self) -> type[pl.LightningModule]:
        """The LightningModule class the recipe runs (NASCLI takes a class, not a factory function)."""
        return cast(type[pl.LightningModule], self._model_class)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Parsers that raise their errors (``parser_errors_in_one_line`` makes each one line) and print the recipe's
        own command in their usage."""
        return super().init_parser(**{"exit_on_error": False, "prog": program(self.strategy), **kwargs})

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        return offered_subcommands(self.strategy)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """``args`` are always the command line, with shipped config names resolved (``run_recipe``), so Lightning's
        warning against passing both ``args`` and a command line would fire on every run: parse them directly.
        ``--ckpt_path last`` with no last run starts a new one, saying so (Lightning's hint would be to set
        ``save_last``, which the recipes do). Checkpoints load with ``weights_only`` unless told otherwise: Lightning
        would unpickle a remote one in full. A relative ``default_root_dir`` is made absolute, so the saved config and
        the commands a run prints work from any folder."""
        try:
            self.config = parser.parse_args(args)
        except ArgumentError as error:  # here the parser's options are at hand, to suggest the closest
            if user_error(error) is not None:
                raise
            subcommand = args[0] if args and args[0] in self.subcommands() else ""
            options = [option for action in getattr(self, "_subcommand_parsers", {}).get(subcommand, parser)._actions
                       for option in action.option_strings]
            command = command_line(program(self.strategy), args, self.subcommands())
            raise ConfigError(parser_error_line(str(error), command, options)) from error
        config = self.config.get(self.config.get("subcommand") or "", None)
        if not isinstance(config, Namespace):
            return
        if config.trainer.default_root_dir is not None:  # so the run's printed paths and commands work from anywhere
            config.trainer.default_root_dir = absolute(config.trainer.default_root_dir)
        if config.get("weights_only", False) is None:
            config.weights_only = True
        if config.get("ckpt_path") == "last":
            root = config.trainer.default_root_dir or os.getcwd()
            config.ckpt_path = last_checkpoint(root)
            if config.ckpt_path is None:
                print(f"--ckpt_path last: no last.ckpt under {root} to resume, so this run starts from scratch")

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the hyperparameters of ``--ckpt_path`` here: a path that is no checkpoint, or a checkpoint
        of another strategy, ends in one line naming it, instead of a KeyError or an unknown option."""
        path = self.config.get(self.config.get("subcommand") or "", Namespace()).get("ckpt_path")
        if path is not None and Path(path).is_dir():
            found = sorted(str(file) for file in Path(path).glob("**/*.ckpt"))
            example = f", e.g. {found[-1]}" if found else ""
            raise ConfigError(f"--ckpt_path {path} is a directory; give a checkpoint file{example}")
        try:
            super()._parse_ckpt_path()
        except ArgumentError as error:
            raise ConfigError(other_strategy_message(path, self.strategy)) from error
        except Exception as error:  # torch's errors for a truncated file or another format say little of either
            reason = f"{type(error).__name__}: {' '.join(str(error).split())}"[:200]
            raise ConfigError(f"--ckpt_path {path} is no checkpoint torch can read: truncated, or not written by "
                              f"torch.save ({reason}); give a .ckpt file that a run saved") from error

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Checkpoints saved by AtomicCheckpointIO unless the config names another CheckpointIO plugin; the run's
        version folder claimed atomically, so concurrent runs in one root never share it (without a logger, the
        root's checkpoints folder locked while the run lasts); a fit resumed from a checkpoint in a version folder of
        its logger continues in that folder (``continue_in_checkpoint_folder``), and a run that fails before training
        gives its claimed folder back (``DropUnusedRunFolder``). Settings Lightning refuses (a GPU
        asked for where there is none, ...) and a root folder that cannot be written end in one line."""
        config = self._get(self.config_init, "trainer", default={})
        plugins = kwargs.get("plugins", config.get("plugins"))
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [] if plugins is None else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as error:
            settings = ", ".join(f"{key}={config.get(key)!r}" for key in ("accelerator", "devices", "strategy"))
            raise ConfigError(f"Lightning refuses the trainer settings ({settings}): {' '.join(str(error).split())}; "
                              "--trainer.accelerator auto uses what this machine has") from None
        if trainer.is_global_zero:
            try:
                resumed, claimed = None, []
                for logger in trainer.loggers:
                    if self.subcommand == "fit":
                        resumed = continue_in_checkpoint_folder(logger, self.config.fit.get("ckpt_path")) or resumed
                    claimed.append(claim_version(logger))
                unused = DropUnusedRunFolder([folder for folder in claimed if folder])
                trainer.callbacks.append(unused)  # type: ignore[attr-defined]  # set by Lightning, not annotated
                self.run_lock = resumed or lock_run_folder(trainer)
            except OSError as error:
                if error.errno not in UNWRITABLE:
                    raise
                raise ConfigError(f"cannot create the run folder {error.filename}: {error.strerror}; give "
                                  "--trainer.default_root_dir a folder this user can write to") from None
        return trainer


def run_recipe(model_class: type[pl.LightningModule], args: list[str] | None = None, run: bool = True,
               cli_class: type[NASCLI] = NASCLI) -> NASCLI:
    """Run a recipe's CLI: the Trainer subcommands the strategy implements, YAML configs (a file or a shipped
    recipe's name) and ``--key=value`` overrides.

    ``run=False`` only parses and instantiates (no subcommand in ``args``), e.g. to check a config. ``cli_class``: a
    NASCLI subclass whose hooks adapt the config to the strategy (ENAS: its DDP strategy). Every strategy configures
    its own optimizers (a search has two), so ``--optimizer`` and ``--lr_scheduler`` are refused in one line."""
    quiet_third_party_notices()
    args = class_paths(shipped_configs(sys.argv[1:] if args is None else args))
    for option in (arg.split("=")[0].split(".")[0] for arg in args):
        if option in ("--optimizer", "--lr_scheduler"):
            raise ConfigError(f"{option} is not supported: {model_class.__name__} configures its own optimizer and "
                              f"schedule; set them with its --model.* options (see --help)")
    with parser_errors_in_one_line(command_line(program(model_class), args, offered_subcommands(model_class))):
        return cli_class(
            model_class,
            NASDataModule,
            subclass_mode_data=True,
            args=args,
            save_config_callback=SaveRunConfig,
            run=run,
            auto_configure_optimizers=False,
        )
