"""The LightningCLI shared by every recipe: any NASDataModule, linked into the strategy's network."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem
from jsonargparse import Namespace

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from lightning_nas.checkpoint_io import AtomicCheckpointIO
from lightning_nas.files import join, write_atomic
from lightning_nas.data import NASDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.recipes import config_path
from lightning_nas.run_folder import claim_version, lock_run_folder, run_directory


WANDB_CONFIG_FILE = "lightning_config.yaml"
"""The run config's name among a W&B run's files."""

USER_ERRORS = (ConfigError, FileNotFoundError, FloatingPointError)
"""What a user can fix: bad input (ConfigError, GenotypeError among them), a missing dataset, a diverged run. Any
other exception is a bug and keeps its traceback."""


@contextmanager
def one_line_errors() -> Iterator[None]:
    """End a recipe with one line ``error: ...`` and exit status 1 on a user error, instead of a traceback; the error
    may arrive wrapped (jsonargparse wraps what a class raises while it is built)."""
    try:
        yield
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, USER_ERRORS):
            cause = cause.__cause__
        if cause is None:
            raise
        sys.exit(f"error: {cause}")


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


def last_checkpoint(root: str | os.PathLike[str]) -> str | None:
    """The most recently written ``last.ckpt`` under ``root`` (a path or URL): the end of the last run there."""
    filesystem, path = fsspec.core.url_to_fs(str(root))
    found = filesystem.glob(join(path, "**", "last.ckpt"))
    if not found:
        return None
    latest = max(found, key=filesystem.modified)
    return latest if isinstance(filesystem, LocalFileSystem) else filesystem.unstrip_protocol(latest)


class NASCLI(LightningCLI):
    """Links the data module's ``num_classes`` and ``in_chans`` into the model, so a config names them once.

    ``--data`` takes any NASDataModule subclass (``--data DigitsDataModule``, ``--data CIFAR10DataModule``, ...).
    Checkpoints are written atomically beside their target (``AtomicCheckpointIO``). Only the subcommands whose step
    the strategy implements are offered (a search has no test or predict step). ``--ckpt_path last`` resumes the last
    run of the same ``default_root_dir``: each run gets a version folder of its own, where Lightning would look.
    """

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        return {name: arguments for name, arguments in LightningCLI.subcommands().items()
                if getattr(self._model_class, STEPS[name]) is not getattr(pl.LightningModule, STEPS[name])}

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """``args`` are always the command line, with shipped config names resolved (``run_recipe``), so Lightning's
        warning against passing both ``args`` and a command line would fire on every run: parse them directly."""
        self.config = parser.parse_args(args)
        config = self.config.get(self.config.get("subcommand") or "", None)
        if isinstance(config, Namespace) and config.get("ckpt_path") == "last":
            last = last_checkpoint(config.trainer.default_root_dir or os.getcwd())
            if last is not None:
                config.ckpt_path = last

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Checkpoints saved by AtomicCheckpointIO unless the config names another CheckpointIO plugin; the run's
        version folder claimed atomically, so concurrent runs in one root never share it (without a logger, the
        root's checkpoints folder locked while the run lasts)."""
        plugins = kwargs.get("plugins", self._get(self.config_init, "trainer", default={}).get("plugins"))
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [] if plugins is None else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                claim_version(logger)
            self.run_lock = lock_run_folder(trainer)
        return trainer


def shipped_config(value: str) -> str:
    """A ``--config`` value: a file or an inline YAML string as it is, else the path of the shipped recipe config of
    that name (an unknown name is a ConfigError listing the shipped ones)."""
    if Path(value).exists() or any(c in value for c in ":{\n"):
        return value
    return str(config_path(value))


def shipped_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config NAME`` / ``--config=NAME`` resolved by ``shipped_config``."""
    resolved = list(args)
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            resolved[i] = "--config=" + shipped_config(arg.removeprefix("--config="))
        elif i > 0 and args[i - 1] == "--config":
            resolved[i] = shipped_config(arg)
    return resolved


def run_recipe(model_class: type[pl.LightningModule], args: list[str] | None = None, run: bool = True,
               cli_class: type[NASCLI] = NASCLI) -> NASCLI:
    """Run a recipe's CLI: the Trainer subcommands the strategy implements, YAML configs (a file or a shipped
    recipe's name) and ``--key=value`` overrides.

    ``run=False`` only parses and instantiates (no subcommand in ``args``), e.g. to check a config. ``cli_class``: a
    NASCLI subclass whose hooks adapt the config to the strategy (ENAS: its DDP strategy). Every strategy configures
    its own optimizers (a search has two), so ``--optimizer`` and ``--lr_scheduler`` are refused in one line."""
    args = shipped_configs(sys.argv[1:] if args is None else args)
    for option in (arg.split("=")[0].split(".")[0] for arg in args):
        if option in ("--optimizer", "--lr_scheduler"):
            raise ConfigError(f"{option} is not supported: {model_class.__name__} configures its own optimizer and "
                              f"schedule; set them with its --model.* options (see --help)")
    return cli_class(
        model_class,
        NASDataModule,
        subclass_mode_data=True,
        args=args,
        save_config_callback=SaveRunConfig,
        run=run,
        auto_configure_optimizers=False,
    )
