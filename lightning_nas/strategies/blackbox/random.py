"""Random search (Li & Talwalkar, 2019): the baseline every NAS method must beat."""

from __future__ import annotations

import random as _random

from lightning_nas.errors import check_counts
from lightning_nas.spaces import SearchSpace
from lightning_nas.strategies.evaluators import Evaluations


def random_search(space: SearchSpace, evaluations: Evaluations, seed: int, batch: int = 1) -> None:
    """Score uniformly drawn architectures, ``batch`` at a time, until the budget is spent."""
    check_counts("random search", batch=batch)
    rng = _random.Random(seed)
    while not evaluations.done:
        evaluations([space.sample(rng) for _ in range(batch)])
