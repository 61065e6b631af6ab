"""Local search (White et al., UAI 2021, "Local search is state of the art for NAS benchmarks")."""

from __future__ import annotations

import random

from lightning_nas.spaces import SearchSpace
from lightning_nas.strategies.evaluators import Evaluations


def local_search(space: SearchSpace, evaluations: Evaluations, seed: int) -> None:
    """Best-improvement hill climbing: score every neighbour (one edit away) of the current architecture and move to
    the best while it improves; at a local optimum, restart from a random architecture."""
    rng = random.Random(seed)
    while not evaluations.done:
        scored = evaluations([space.sample(rng)])
        if not scored:
            return
        current = scored[0]
        while not evaluations.done:
            neighbours = space.neighbours(current[0])
            rng.shuffle(neighbours)  # ties and a budget that ends mid-neighbourhood favour no edit
            best = max(evaluations(neighbours), key=lambda pair: pair[1], default=None)
            if best is None or best[1] <= current[1]:
                break
            current = best
