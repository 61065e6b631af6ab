"""The package's error types: what a user can fix, as opposed to a bug."""

from __future__ import annotations


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
