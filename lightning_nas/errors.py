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
