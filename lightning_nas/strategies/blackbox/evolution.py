"""Regularized evolution (Real et al., AAAI 2019, "aging evolution")."""

from __future__ import annotations

import random
from collections import deque

from lightning_nas.errors import check, check_counts
from lightning_nas.spaces import SearchSpace
from lightning_nas.strategies.blackbox.zero_cost import proxy_ranked
from lightning_nas.strategies.evaluators import Evaluations


def regularized_evolution(space: SearchSpace, evaluations: Evaluations, seed: int, population: int = 20,
                          tournament: int = 5, warm_start: int = 0) -> None:
    """A population of ``population`` scored architectures (random at first). Each cycle picks ``tournament`` of
    them at random, mutates the best of those, adds the child and removes the oldest member, not the worst: an
    architecture survives by having good children, not by one lucky score. ``warm_start`` > 0 draws that many
    architectures instead and takes the proxy's best ``population`` of them as the first population."""
    check_counts("regularized evolution", population=population, tournament=tournament)
    check(warm_start == 0 or warm_start >= population,
          f"regularized evolution: warm_start={warm_start!r} must be 0 (off) or at least population={population}")
    rng = random.Random(seed)
    first = (proxy_ranked(space, evaluations, rng, warm_start, "regularized evolution with warm_start")[:population]
             if warm_start else [space.sample(rng) for _ in range(population)])
    alive = deque(evaluations(first))
    while not evaluations.done and alive:
        parent, _ = max(rng.sample(list(alive), min(tournament, len(alive))), key=lambda member: member[1])
        alive.extend(evaluations([space.mutate(parent, rng)]))
        while len(alive) > population:
            alive.popleft()
