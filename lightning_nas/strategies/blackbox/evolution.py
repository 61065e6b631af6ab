"""Regularized evolution (Real et al., AAAI 2019, "aging evolution")."""

from __future__ import annotations

import random
from collections import deque

from lightning_nas.errors import check_counts
from lightning_nas.spaces import SearchSpace
from lightning_nas.strategies.evaluators import Evaluations


def regularized_evolution(space: SearchSpace, evaluations: Evaluations, seed: int, population: int = 20,
                          tournament: int = 5) -> None:
    """A population of ``population`` scored architectures (random at first). Each cycle picks ``tournament`` of
    them at random, mutates the best of those, adds the child and removes the oldest member, not the worst: an
    architecture survives by having good children, not by one lucky score."""
    check_counts("regularized evolution", population=population, tournament=tournament)
    rng = random.Random(seed)
    alive = deque(evaluations([space.sample(rng) for _ in range(population)]))
    while not evaluations.done and alive:
        parent, _ = max(rng.sample(list(alive), min(tournament, len(alive))), key=lambda member: member[1])
        alive.extend(evaluations([space.mutate(parent, rng)]))
        while len(alive) > population:
            alive.popleft()
