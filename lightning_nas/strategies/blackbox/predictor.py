"""Predictor-guided search: PNAS's idea (Liu et al., ECCV 2018) on any space, in the form BANANAS (White et al.,
AAAI 2021) gave it for black-box search: an ensemble of small networks learns the score from the space's encoding;
each round it ranks many proposals and only the K it predicts best are scored."""

from __future__ import annotations

import heapq
import random

import numpy as np

from lightning_nas.errors import check, check_counts
from lightning_nas.spaces import Architecture, SearchSpace
from lightning_nas.strategies.blackbox.zero_cost import proxy_ranked
from lightning_nas.strategies.evaluators import Evaluations


class MLPEnsemble:
    """``members`` one-hidden-layer networks whose hidden layers are random ReLU features and whose output layers are
    fitted in closed form (ridge regression): an ensemble that fits in microseconds, so a search can refit it after
    every batch of queries. Each member has its own hidden layer and its own bootstrap sample of the data, as PNAS's
    members train on their own folds; their mean is the prediction."""

    def __init__(self, inputs: int, rng: np.random.Generator, members: int = 5, hidden: int = 128,
                 ridge: float = 1.0, max_sample: int = 1000) -> None:
        self.w = rng.normal(0.0, inputs**-0.5, (members, inputs, hidden))
        self.b = rng.normal(0.0, 0.5, (members, 1, hidden))
        self.ridge, self.rng, self.max_sample = ridge, rng, max_sample
        self.heads = np.zeros((members, hidden + 1))

    def features(self, x: np.ndarray, member: int | None = None) -> np.ndarray:
        """Every member's random features of ``x`` (members x rows x hidden + 1), or one ``member``'s."""
        w, b = (self.w, self.b) if member is None else (self.w[member], self.b[member, 0])
        hidden = np.maximum(x @ w + b, 0.0)
        return np.concatenate([hidden, np.ones(hidden.shape[:-1] + (1,))], axis=-1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit each member on its own bootstrap sample of the scores, of at most ``max_sample`` of them: a refit
        after every batch then costs the same after 1,000 queries as after 15,000 (a full sample made a long search
        quadratic in its queries), and up to ``max_sample`` scores nothing changes."""
        size = min(len(y), self.max_sample)
        for m in range(len(self.heads)):
            rows = self.rng.integers(len(y), size=size)
            a, t = self.features(x[rows], m), y[rows]
            self.heads[m] = np.linalg.solve(a.T @ a + self.ridge * np.eye(a.shape[1]), a.T @ t)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("mnh,mh->n", self.features(x), self.heads) / len(self.heads)


class EncodedHistory:
    """A surrogate-guided search's scored architectures, each encoded once (the surrogate refits on all of them every
    round), with the keys seen (never proposed again) and the 10 best so far (the next proposals' parents)."""

    def __init__(self, space: SearchSpace, queries: int, inputs: int) -> None:
        self.space, self.size = space, 0
        self.x, self.y = np.empty((queries, inputs)), np.empty(queries)
        self.seen: set[str] = set()
        self.best: list[tuple[Architecture, float]] = []

    def score(self, evaluations: Evaluations, batch: list[Architecture]) -> None:
        """Score ``batch`` and encode what it added."""
        added = len(evaluations.history)
        self.seen.update(self.space.key(arch) for arch, _ in evaluations(batch))
        new = evaluations.history[added:]
        for row, (arch, score) in enumerate(new, added):
            self.x[row], self.y[row] = self.space.encode(arch), score
        self.size = len(evaluations.history)
        self.best = heapq.nlargest(10, self.best + new, key=lambda pair: pair[1])

    def standardised(self) -> tuple[np.ndarray, np.ndarray]:
        """The encodings and their scores standardised (mean 0, sd 1), what the surrogates fit."""
        scores = self.y[:self.size]
        return self.x[:self.size], (scores - scores.mean()) / (scores.std() + 1e-8)

    def parents(self) -> list[Architecture]:
        return [arch for arch, _ in self.best]


def propose(space: SearchSpace, rng: random.Random, parents: list[Architecture], seen: set[str],
            count: int) -> list[Architecture]:
    """Up to ``count`` distinct unseen architectures, alternately a mutation of a random one of ``parents`` and a
    uniform draw (BANANAS's pool: local moves around the best so far, and random ones so the pool is not stuck)."""
    candidates: dict[str, Architecture] = {}
    for i in range(count * 10):
        if len(candidates) >= count:
            break
        arch = space.mutate(rng.choice(parents), rng) if i % 2 == 0 else space.sample(rng)
        if space.key(arch) not in seen:
            candidates.setdefault(space.key(arch), arch)
    return list(candidates.values())


def predictor_guided(space: SearchSpace, evaluations: Evaluations, seed: int, initial: int = 10, k: int = 10,
                     proposals: int = 200, members: int = 5, warm_start: int = 0) -> None:
    """Score ``initial`` random architectures; then each round fit the ensemble on every score so far, propose
    ``proposals`` unseen architectures (half mutations of the 10 best so far, half random) and score the ``k`` with
    the best mean prediction. ``warm_start`` > 0 draws that many architectures first and takes the proxy's best
    ``initial`` of them as the first training set."""
    check_counts("predictor-guided search", initial=initial, k=k, proposals=proposals, members=members)
    check(warm_start == 0 or warm_start >= initial,
          f"predictor-guided search: warm_start={warm_start!r} must be 0 (off) or at least initial={initial}")
    rng = random.Random(seed)
    first = (proxy_ranked(space, evaluations, rng, warm_start, "predictor-guided search with warm_start")[:initial]
             if warm_start else None)
    inputs = len(space.encode(space.sample(rng)))
    ensemble = MLPEnsemble(inputs, np.random.default_rng(seed), members)
    history = EncodedHistory(space, evaluations.queries, inputs)
    batch = first if first is not None else [space.sample(rng) for _ in range(initial)]
    while not evaluations.done:
        history.score(evaluations, batch)
        ensemble.fit(*history.standardised())
        archs = propose(space, rng, history.parents(), history.seen, proposals)
        if not archs:
            return
        predicted = ensemble.predict(np.array([space.encode(arch) for arch in archs]))
        batch = [archs[i] for i in np.argsort(-predicted, kind="stable")[:k]]
