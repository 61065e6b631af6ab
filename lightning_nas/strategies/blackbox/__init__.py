"""Black-box search strategies over any registered space: each is a short loop that asks the space for
architectures (sample, mutate, neighbours, encode) and an ``Evaluations`` for their scores, so each runs unchanged on
a benchmark table (seconds) or on proxy training (the recipes). ``STRATEGIES`` names them; each takes ``(space,
evaluations, seed, **hyper-parameters)`` and stops when the evaluations' budget is spent."""

from typing import Any, Callable

from lightning_nas.strategies.blackbox.evolution import regularized_evolution
from lightning_nas.strategies.blackbox.local import local_search
from lightning_nas.strategies.blackbox.predictor import predictor_guided
from lightning_nas.strategies.blackbox.random import random_search
from lightning_nas.strategies.blackbox.reinforce import reinforce

STRATEGIES: dict[str, Callable[..., Any]] = {
    "random": random_search,
    "evolution": regularized_evolution,
    "reinforce": reinforce,
    "predictor": predictor_guided,
    "local": local_search,
}

__all__ = ["STRATEGIES", "local_search", "predictor_guided", "random_search", "regularized_evolution", "reinforce"]
