"""Predictor-guided search: PNAS's idea (Liu et al., ECCV 2018) on any space, in the form BANANAS (White et al.,
AAAI 2021) gave it for black-box search: an ensemble of small networks learns the score from the space's encoding;
each round it ranks many proposals and only the K it predicts best are scored."""

from __future__ import annotations

import heapq
import random

import numpy as np

from lightning_nas.errors import check_counts
from lightning_nas.spaces import Architecture, SearchSpace
from lightning_nas.strategies.evaluators import Evaluations


class MLPEnsemble:
    """``members`` one-hidden-layer networks whose hidden layers are random ReLU features and whose output layers are
    fitted in closed form (ridge regression): an ensemble that fits in microseconds, so a search can refit it after
    every batch of queries. Each member has its own hidden layer and its own bootstrap sample of the data, as PNAS's
    members train on their own folds; their mean is the prediction.

    The bootstrap is online (Oza and Russell, 2001): each score joins each member with a Poisson(1) weight drawn once,
    and a member keeps only its weighted sums (``add``), so a refit costs the same after 20 queries as after 20,000
    (resampling every score each round made a search quadratic in its queries)."""

    def __init__(self, inputs: int, rng: np.random.Generator, members: int = 5, hidden: int = 128,
                 ridge: float = 1.0) -> None:
        self.w = rng.normal(0.0, inputs**-0.5, (members, inputs, hidden))
        self.b = rng.normal(0.0, 0.5, (members, 1, hidden))
        self.ridge, self.rng = ridge, rng
        self.heads = np.zeros((members, hidden + 1))
        self.gram = np.zeros((members, hidden + 1, hidden + 1))
        """Per member, the weighted sums of phi phi^T, phi y and phi over the scores added so far."""
        self.phi_y = np.zeros((members, hidden + 1))
        self.phi = np.zeros((members, hidden + 1))

    def features(self, x: np.ndarray) -> np.ndarray:
        hidden = np.maximum(x[None] @ self.w + self.b, 0.0)
        return np.concatenate([hidden, np.ones(hidden.shape[:2] + (1,))], axis=2)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add scores ``y`` of encodings ``x`` to every member's bootstrap sample."""
        phi = self.features(x)
        weights = self.rng.poisson(1.0, (len(self.heads), len(y))).astype(float)
        self.gram += np.einsum("mn,mni,mnj->mij", weights, phi, phi)
        self.phi_y += np.einsum("mn,mni,n->mi", weights, phi, y)
        self.phi += np.einsum("mn,mni->mi", weights, phi)

    def fit(self, mean: float, scale: float) -> None:
        """Fit every member on its sample with the targets standardised as ``(y - mean) / scale``."""
        eye = self.ridge * np.eye(self.gram.shape[1])
        for m in range(len(self.heads)):
            self.heads[m] = np.linalg.solve(self.gram[m] + eye, (self.phi_y[m] - mean * self.phi[m]) / scale)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("mnh,mh->n", self.features(x), self.heads) / len(self.heads)


def predictor_guided(space: SearchSpace, evaluations: Evaluations, seed: int, initial: int = 10, k: int = 10,
                     proposals: int = 200, members: int = 5) -> None:
    """Score ``initial`` random architectures; then each round add the new scores to the ensemble and refit it,
    propose ``proposals`` unseen architectures (half mutations of the 10 best so far, half random) and score the ``k``
    with the best mean prediction. Each round costs the same however many queries came before."""
    check_counts("predictor-guided search", initial=initial, k=k, proposals=proposals, members=members)
    rng = random.Random(seed)
    ensemble = MLPEnsemble(len(space.encode(space.sample(rng))), np.random.default_rng(seed), members)
    seen: set[str] = set()
    best: list[tuple[Architecture, float]] = []
    batch = [space.sample(rng) for _ in range(initial)]
    while not evaluations.done:
        added = len(evaluations.history)
        seen.update(space.key(arch) for arch, _ in evaluations(batch))
        new = evaluations.history[added:]
        if not new:
            return
        ensemble.add(np.array([space.encode(arch) for arch, _ in new]), np.array([score for _, score in new]))
        y = np.array([score for _, score in evaluations.history])
        ensemble.fit(float(y.mean()), float(y.std()) + 1e-8)
        best = heapq.nlargest(10, best + new, key=lambda pair: pair[1])
        parents = [arch for arch, _ in best]
        candidates: dict[str, Architecture] = {}
        for i in range(proposals * 10):
            if len(candidates) >= proposals:
                break
            arch = space.mutate(rng.choice(parents), rng) if i % 2 == 0 else space.sample(rng)
            if space.key(arch) not in seen:
                candidates.setdefault(space.key(arch), arch)
        if not candidates:
            return
        archs = list(candidates.values())
        predicted = ensemble.predict(np.array([space.encode(arch) for arch in archs]))
        batch = [archs[i] for i in np.argsort(-predicted, kind="stable")[:k]]
