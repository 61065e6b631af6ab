"""What a recipe says to its user when something is wrong: one line for what the user can fix (bad input, a parse
error, a missing dataset, a diverged run, a full disk), a traceback only for a bug; and none of the third-party
notices the user cannot act on."""

from __future__ import annotations

import difflib
import errno
import logging
import re
import sys
import warnings
from argparse import ArgumentError
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

from lightning_nas.errors import ConfigError

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


def subclass_names(base: type) -> list[str]:
    """Names of the imported subclasses of ``base``, what ``--data NAME`` accepts."""
    found: set[str] = set()
    stack: list[type] = base.__subclasses__()
    while stack:
        cls = stack.pop()
        found.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return sorted(found)


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
        from lightning_nas.data import NASDataModule

        known = (f"; known: {', '.join(subclass_names(NASDataModule))}, or a class of your own module by its import "
                 "path, package.module:Class" if keys == ["data"] else f"; {help_hint}")
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
