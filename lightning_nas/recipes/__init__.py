"""CLI programs: ``python -m lightning_nas.recipes.<darts|enas|rsps|pnas|blackbox|train> fit --config <name or file>``.

The recipe configs ship with the package (``configs/`` is the repository's ``recipes/`` folder): ``--config
darts_digits`` or ``config_path("darts_digits")`` finds one by name wherever the package is installed. ``PROGRAMS``
names the command that runs each strategy or driver class.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lightning_nas.errors import ConfigError
from lightning_nas.plugins import load

CONFIGS = Path(__file__).with_name("configs")


def config_names() -> list[str]:
    """Names of the shipped recipe configs (``sweeps/train``, ``quality/darts_digits`` for those in subfolders)."""
    return sorted(path.relative_to(CONFIGS).with_suffix("").as_posix() for path in CONFIGS.glob("**/*.yaml"))


def config_path(name: str) -> Path:
    """The file of the shipped recipe config ``name`` (``.yaml`` optional)."""
    path = CONFIGS / Path(name).with_suffix(".yaml")
    if not path.is_file():
        raise ConfigError(f"no recipe config named {name!r}; the package ships {', '.join(config_names())}")
    return path


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


IMPORT_PATH = r"[\w.]+:[\w.]+"
"""``package.module:Name``."""

CLASS_OPTIONS = ("--data", "--data.class_path")
"""The options that name a class, which a command line may give by its import path, ``package.module:Class``."""


def class_paths(args: list[str]) -> list[str]:
    """``args`` with each class of ``CLASS_OPTIONS`` given by its import path (``--data mypkg.data:MyData``, a data
    module of the user's own) written as jsonargparse takes it, ``mypkg.data.MyData``; a module or class that is not
    there is a one-line ConfigError naming it."""
    resolved = list(args)
    for i, arg in enumerate(args):
        option, equals, value = arg.partition("=")
        if equals and option in CLASS_OPTIONS and re.fullmatch(IMPORT_PATH, value):
            resolved[i] = f"{option}={class_path(value)}"
        elif i > 0 and args[i - 1] in CLASS_OPTIONS and re.fullmatch(IMPORT_PATH, arg):
            resolved[i] = class_path(arg)
    return resolved


def class_path(import_path: str) -> str:
    """The class ``package.module:Class`` as jsonargparse names it, once it is found."""
    load(import_path, "data module")
    return import_path.replace(":", ".")


PROGRAMS = {
    "DARTS": "python -m lightning_nas.recipes.darts",
    "ENAS": "python -m lightning_nas.recipes.enas",
    "FinalTraining": "python -m lightning_nas.recipes.train",
    "PNASSearch": "python -m lightning_nas.recipes.pnas",
    "RSPS": "python -m lightning_nas.recipes.rsps",
    "BlackBoxSearch": "python -m lightning_nas.recipes.blackbox",
    "QualityReport": "python -m lightning_nas.quality",
}
"""The command that runs each strategy or driver class, by class name: its recipe's program name in usage and error
lines, and the recipe a checkpoint of that strategy resumes with. Each black-box method of
``strategies.blackbox.METHODS`` also has a command of its own, ``python -m lightning_nas.recipes.<method>``
(``recipes.blackbox.command``)."""


def program(cls: type) -> str:
    """The command line that runs ``cls`` (its class name for a class no recipe runs)."""
    return PROGRAMS.get(cls.__name__, cls.__name__)
