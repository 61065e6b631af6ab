"""Random-search baseline recipe: ``python -m lightning_nas.recipes.random fit --config recipes/random_digits.yaml``.

Like the PNAS recipe it drives many short Trainer fits (see ``driver``). ``--space`` picks a registered space
(``lightning_nas.spaces.SPACES``: darts, enas_micro, enas_macro, pnas, nb201).
"""

from __future__ import annotations

from typing import Any

from lightning_nas.recipes.driver import run_driver
from lightning_nas.strategies.blackbox_search import RandomSearch


def main(args: list[str] | None = None) -> Any:
    return run_driver(RandomSearch, "Random search", args)


if __name__ == "__main__":
    main()
