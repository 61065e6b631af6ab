"""The package's error types: what a user can fix, as opposed to a bug; and the argparse parser that reports one in
one line."""

from __future__ import annotations

import argparse
from typing import NoReturn


class ConfigError(ValueError):
    """Bad input (an argument, a config value, a file): the message says what is wrong, the value, and how to fix it.

    Recipes end with this message on one line and a non-zero exit status, before any data is loaded or any training
    starts; a ValueError is still what it subclasses, so library callers may catch either.
    """


def check(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition`` holds: one line per argument rule."""
    if not condition:
        raise ConfigError(message)


def check_counts(owner: str, **counts: int) -> None:
    """Each of ``counts`` must be a whole number >= 1 (a population, a tournament, a batch): one line naming it."""
    for name, value in counts.items():
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
              f"{owner}: {name}={value!r} must be a whole number >= 1")


class OneLineParser(argparse.ArgumentParser):
    """argparse for the package's plain commands (``python -m lightning_nas.benchmark``, its ``build`` and
    ``describe``, ``python -m lightning_nas.speed``): an error is one line, ``<prog>: error: <message> (see --help)``,
    and exit status 2; the usage prints with ``--help`` only. Subcommand parsers made from one are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")
