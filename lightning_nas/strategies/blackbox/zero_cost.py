"""Training-free search (Mellor et al., ICML 2021, "NAS without training"; Abdelfattah et al., ICLR 2021, "Zero-cost
proxies"): rank many uniformly drawn architectures by a zero-cost proxy and spend queries on the best of them only.
``proxy_ranked`` is also the warm start of regularized evolution and predictor-guided search."""

from __future__ import annotations

import random

from lightning_nas.errors import check_counts
from lightning_nas.spaces import Architecture, SearchSpace
from lightning_nas.strategies.evaluators import Evaluations


def proxy_ranked(space: SearchSpace, evaluations: Evaluations, rng: random.Random, draws: int,
                 who: str) -> list[Architecture]:
    """``draws`` distinct architectures drawn uniformly (fewer if the space or its budget holds fewer), best proxy
    score first (ties in draw order); refused in one line, before any query, without a proxy."""
    proxy = evaluations.require_proxy(who)
    drawn: dict[str, Architecture] = {}
    for _ in range(10 * draws):
        if len(drawn) == draws:
            break
        arch = space.sample(rng)
        drawn.setdefault(space.key(arch), arch)
    archs = list(drawn.values())
    scores = proxy(archs)
    return [archs[i] for i in sorted(range(len(archs)), key=lambda i: -scores[i])]


def zero_cost(space: SearchSpace, evaluations: Evaluations, seed: int, samples: int = 10_000) -> None:
    """Draw ``samples`` architectures, rank them by the proxy and score them in that order until the budget is spent:
    after q queries the incumbent is the best of the proxy's top q (NASWOT's "best of N" is q = 1, trained).
    ``samples`` was chosen on NAS-Bench-201 seeds 0-99 from 150-10,000 with the params proxy (SEARCH_QUALITY.md)."""
    check_counts("training-free search", samples=samples)
    evaluations(proxy_ranked(space, evaluations, random.Random(seed), samples, "training-free search"))
