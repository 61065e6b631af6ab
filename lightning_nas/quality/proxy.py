"""The PNAS search's proxy as the report's PNAS sections use it (``predictor_eval``, ``target_noise``).

Both measure something about a search as its recipe runs it, so they build the search from that recipe (its proxy
budget, held-out data and predictor), train uniformly drawn random cells as it trains its candidates
(``PNASSearch.session``, ``train_cells``, ``train_with_seeds``), and report the budget they measured.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from lightning_nas.errors import ConfigError, check
from lightning_nas.recipes.driver import build_driver
from lightning_nas.spaces.pnas import PNASCell, PNASSpace, random_cell
from lightning_nas.strategies.pnas import PNASSearch

DRAWS_PER_CELL = 1000
"""How many random cells ``random_cells`` may draw per distinct cell it needs before giving up."""


def random_cells(seed: str, blocks: int, count: int, ops: Sequence[str], section: str, fix: str) -> list[PNASCell]:
    """The first ``count`` distinct cells of a stream of ``random_cell`` draws seeded by ``seed`` (so a longer list
    starts with a shorter one). Too few distinct cells in the space: a ConfigError naming the report ``section`` that
    asked and its ``fix``."""
    rng = random.Random(seed)
    cells: dict[PNASCell, None] = {}
    for _ in range(DRAWS_PER_CELL * count):
        if len(cells) == count:
            break
        cells.setdefault(random_cell(rng, blocks, ops))
    check(len(cells) == count, f"{section} asks for {count} distinct random {blocks}-block cells, but the space "
                               f"of ops {list(ops)} gave only {len(cells)}: {fix}")
    return list(cells)


def search_from_recipe(search_config: str, search_args: Sequence[str], output_dir: Path) -> PNASSearch:
    """The search its recipe describes (with the report's search overrides), built but not run, its candidates kept
    in ``output_dir``."""
    return build_driver(PNASSearch, "PNAS search", ["--config", search_config, *search_args,
                                                    f"--output_dir={output_dir}"], subcommand=None)


def cell_ops(search: PNASSearch) -> tuple[str, ...]:
    """The ops of the PNAS cells ``search`` grows, which the report's random cells draw from."""
    if not isinstance(search.space, PNASSpace):
        raise ConfigError(f"the report's PNAS sections draw random PNAS cells, but the search config searches the "
                          f"{search.space.name} space: give one of the pnas space")
    return search.space.ops


def proxy_budget(search: PNASSearch) -> dict[str, Any]:
    """The proxy budget every candidate of ``search`` trains under, for the report."""
    budget = search.budget
    return {"N": budget.N, "F": budget.F, "epochs": budget.epochs, "lr": budget.lr,
            "limit_train_batches": budget.limit_train_batches, "lr_interval": budget.lr_interval, "seed": search.seed}
