"""The LightningCLI shared by every recipe: any NASDataModule, linked into the strategy's network."""

from __future__ import annotations

import csv
import difflib
import errno
import inspect
import io
import logging
import os
import re
import sys
import warnings
from argparse import ArgumentError
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence, cast

import fsspec
import yaml
from fsspec.implementations.local import LocalFileSystem
from jsonargparse import Namespace

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from lightning_nas.checkpoint_io import AtomicCheckpointIO
from lightning_nas.files import absolute, is_local, join, write_atomic
from lightning_nas.data import NASDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.recipes import config_path
from lightning_nas.run_folder import DropUnusedRunFolder, claim_version, lock_folder, lock_run_folder, run_directory


WANDB_CONFIG_FILE = "lightning_config.yaml"
"""The run config's name among a W&B run's files."""

UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
"""The errors of a folder the run cannot write to: permissions, a read-only or full filesystem."""

USER_ERRORS = (ConfigError, FileNotFoundError, FloatingPointError)
"""What a user can fix: bad input (ConfigError, GenotypeError among them), a missing dataset, a diverged run. Any
other exception is a bug and keeps its traceback."""


class DropLitLoggerTip(logging.Filter):
    """Drops Lightning's advertisement for litlogger, logged by every Trainer that has no LitLogger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


DROP_LITLOGGER_TIP = DropLitLoggerTip()


def quiet_third_party_notices() -> None:
    """Keep a recipe's output to its run: no litlogger advertisement, no notice that ``logger=True`` means a
    CSVLogger where tensorboard is not installed (what the recipes expect), and no torch deprecation warning about
    LeafSpec, which Lightning's CombinedLoader (search-mode data) sets off, none of which the user can act on."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(DROP_LITLOGGER_TIP)
    warnings.filterwarnings("ignore", r"Starting from v1\.9\.0, `tensorboardX` has been removed")
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
    # a run resumed into its own version folder (continue_in_checkpoint_folder) finds its checkpoints there
    warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write that found its filesystem (or the user's quota) full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def user_error(error: BaseException) -> BaseException | None:
    """The user error ``error`` is or wraps (jsonargparse wraps what a class raises while it is built), if any."""
    cause: BaseException | None = error
    while cause is not None and not (isinstance(cause, USER_ERRORS) or disk_full(cause)):
        cause = cause.__cause__
    return cause


@contextmanager
def one_line_errors() -> Iterator[None]:
    """End a recipe with one line ``error: ...`` and exit status 1 on a user error, instead of a traceback."""
    try:
        yield
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        if isinstance(cause, OSError) and disk_full(cause):  # checkpoints are written atomically: the last is whole
            sys.exit(f"error: {cause.strerror} writing {cause.filename}; free space there, or give "
                     "--trainer.default_root_dir a folder on another disk and resume from the last checkpoint")
        sys.exit(f"error: {cause}")


PROGRAMS = {
    "DARTS": "python -m lightning_nas.recipes.darts",
    "ENAS": "python -m lightning_nas.recipes.enas",
    "FinalTraining": "python -m lightning_nas.recipes.train",
    "PNASSearch": "python -m lightning_nas.recipes.pnas",
    "RandomSearch": "python -m lightning_nas.recipes.random",
    "RSPS": "python -m lightning_nas.recipes.rsps",
    "RegularizedEvolution": "python -m lightning_nas.recipes.evolution",
    "Reinforce": "python -m lightning_nas.recipes.reinforce",
    "PredictorGuided": "python -m lightning_nas.recipes.predictor",
    "LocalSearch": "python -m lightning_nas.recipes.local",
    "QualityReport": "python -m lightning_nas.quality",
}
"""The command that runs each strategy or driver class, by class name: its recipe's program name in usage and error
lines, and the recipe a checkpoint of that strategy resumes with."""


def program(cls: type) -> str:
    """The command line that runs ``cls`` (its class name for a class no recipe runs)."""
    return PROGRAMS.get(cls.__name__, cls.__name__)


def subclass_names(base: type) -> list[str]:
    """Names of the imported subclasses of ``base``, what ``--data NAME`` accepts."""
    found: set[str] = set()
    stack: list[type] = base.__subclasses__()
    while stack:
        cls = stack.pop()
        found.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return sorted(found)


def other_strategy_message(path: str, model_class: type) -> str:
    """What to say of checkpoint ``path`` whose hyperparameters ``model_class`` does not take: the strategy whose
    they are and its recipe, when one of ours takes them all."""
    import torch

    from lightning_nas.strategies.darts import DARTS
    from lightning_nas.strategies.enas import ENAS
    from lightning_nas.strategies.final_training import FinalTraining

    keys = set(torch.load(path, weights_only=True, map_location="cpu").get("hyper_parameters", {})) - {"_instantiator"}
    for cls in (DARTS, ENAS, FinalTraining):
        if cls is not model_class and keys <= set(inspect.signature(cls).parameters):
            return (f"--ckpt_path {path} is a checkpoint of {cls.__name__}, not {model_class.__name__}: "
                    f"use it with {program(cls)}")
    unknown = sorted(keys - set(inspect.signature(model_class).parameters))
    return (f"--ckpt_path {path} holds hyperparameters {model_class.__name__} does not take ({', '.join(unknown)}); "
            f"give a checkpoint of {program(model_class)}")


def parser_error_line(message: str, command: str, options: Sequence[str] = ()) -> str:
    """jsonargparse's (often multi-line, nested) parse error as one line: the option, the value, what it must be, and
    where to read the options (an unknown option: the closest of ``options``, if one is close). Unknown messages keep
    their text, on one line."""
    help_hint = f"`{command} --help` lists the options"
    keys = re.findall(r'Parser key "([^"]+)"', message)
    option = "--" + ".".join(keys)
    if unknown := re.match(r"unrecognized arguments: (\S+)", message):
        close = difflib.get_close_matches(unknown[1].split("=")[0], options, n=1, cutoff=0.85)  # a typo, not a prefix
        return f"unknown option {unknown[1]}{f' (did you mean {close[0]}?)' if close else ''}; {help_hint}"
    if unknown_class := re.search(r"Expected a dot import path string: (\S+)", message):
        known = f"; known: {', '.join(subclass_names(NASDataModule))}" if keys == ["data"] else f"; {help_hint}"
        return f"{option}: no class named {unknown_class[1]!r}{known}"
    pydantic = r"Input should be ([^,\[]+?)(?:,[^\[]*)? ?\[type=(\w+), input_value='?(.*?)'?, input_type"
    if constrained := re.search(pydantic, message):  # the constrained types of lightning_nas.arguments
        requirement, code, value = constrained.groups()
        if code.startswith(("greater_than", "less_than")) and not requirement[-1].isdigit():
            requirement += f" {value}"  # jsonargparse cuts " <value>" from nested errors, and so a bound equal to it
        return f"{option} must be {requirement}, got {value}"
    if expected := re.search(r"Expected an? (.+?)\. Got value: (.+)", message):
        return f"{option} must be {readable_type(expected[1])}, got {expected[2]!r}"
    if given := re.search(r"Subtypes: \[(.+?)\].*Given value: (.+)$", message, re.DOTALL):
        types = " or ".join(readable_type(name) for name in given[1].split(", "))
        return f"{option} must be {types}, got {given[2]!r}"
    return f"{' '.join(message.split())}; {help_hint}"


def readable_type(name: str) -> str:
    """``<class 'float'>`` as ``a float``, ``typing.Literal['a', 'b']`` as ``one of 'a', 'b'``."""
    if literal := re.fullmatch(r"typing\.Literal\[(.+)\]", name):
        return f"one of {literal[1]}"
    if cls := re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>", name):
        return "null" if cls[1] == "NoneType" else f"a{'n' if cls[1][0] in 'aeiou' else ''} {cls[1]}"
    return name


def command_line(program_name: str, args: list[str], subcommands: Iterable[str]) -> str:
    """The program and its subcommand, if ``args`` start with one of ``subcommands``: what ``--help`` follows in an
    error's hint."""
    return f"{program_name} {args[0]}" if args and args[0] in subcommands else program_name


@contextmanager
def parser_errors_in_one_line(command: str) -> Iterator[None]:
    """Turn the parser's errors (jsonargparse raises them, ``exit_on_error=False``) into ConfigErrors of one line;
    errors a class raised while it was built keep their own message."""
    try:
        yield
    except ArgumentError as error:
        if user_error(error) is not None:
            raise
        raise ConfigError(parser_error_line(str(error), command)) from error


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


def continue_in_checkpoint_folder(logger: Logger, ckpt_path: str | None) -> IO[str] | None:
    """Give a CSV or TensorBoard logger without a set version the version folder ``ckpt_path`` lies in
    (``<root_dir>/version_K/checkpoints/...``), so a resumed run keeps its plots, metrics, history and checkpoints
    in one folder, and lock that folder while the run lasts (returned: a second resume of the same run at once is
    refused in one line, instead of both writing every epoch's metrics and checkpoints there). Lightning's CSV writer
    deletes the metrics file of a folder it finds in use: the rows of the steps the checkpoint holds are written back
    (later ones, logged after it was saved, are trained again)."""
    root_dir = getattr(logger, "root_dir", None)
    if ckpt_path is None or root_dir is None or getattr(logger, "_version", 0) is not None:
        return None
    folder, separator, _ = str(ckpt_path).rpartition("/checkpoints/")
    root, _, version = folder.rpartition("/version_")
    (filesystem, path), (root_filesystem, root_path) = fsspec.core.url_to_fs(root), fsspec.core.url_to_fs(root_dir)
    if not separator or not version.isdigit() or (type(filesystem), path) != (type(root_filesystem), root_path):
        return None
    lock = lock_folder(folder, f"another run is resuming {ckpt_path} in {folder}", "wait for it to end; "
                       "two resumes of one run would write one folder") if is_local(folder) else None
    logger._version = int(version)  # type: ignore[attr-defined]  # CSVLogger and TensorBoardLogger keep it there
    if isinstance(logger, CSVLogger):
        keep_metrics_before(logger, ckpt_path)
    return lock


def keep_metrics_before(logger: CSVLogger, ckpt_path: str) -> None:
    """Keep the rows of ``logger``'s metrics file logged before the checkpoint's step, across the deletion of the
    file by Lightning's CSV writer when it starts."""
    import torch

    path = join(logger.log_dir, "metrics.csv")
    filesystem = fsspec.core.url_to_fs(path)[0]
    if not filesystem.isfile(path):
        return
    with filesystem.open(path, "r", newline="") as file:
        rows = list(csv.DictReader(file))
    with fsspec.open(str(ckpt_path), "rb") as file:
        global_step = torch.load(file, map_location="cpu", weights_only=True)["global_step"]
    experiment = logger.experiment  # the writer, which deletes the file
    kept = [row for row in rows if int(row["step"]) < global_step]
    if kept:
        experiment.metrics_keys = sorted(kept[0])
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=experiment.metrics_keys)
        writer.writeheader()
        writer.writerows(kept)
        write_atomic(path, text.getvalue())


def shipped_config(value: str) -> str:
    """A ``--config`` value: a file (a ConfigError unless it holds YAML) or an inline YAML string as it is, else the
    path of the shipped recipe config of that name (an unknown name is a ConfigError listing the shipped ones)."""
    if Path(value).is_file():
        try:
            yaml.safe_load(Path(value).read_bytes())
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"--config {value} is not a YAML file ({error.problem}{where}); fix it or give "
                              "another") from None
        except yaml.reader.ReaderError as error:
            raise ConfigError(f"--config {value} is not a YAML file (not text: byte {error.character:#04x} at "
                              f"position {error.position}); give a YAML file") from None
        return value
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
    quiet_third_party_notices()
    args = shipped_configs(sys.argv[1:] if args is None else args)
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
