"""Bayesian optimisation: a Gaussian process on the space's encoding with expected improvement (Močkus, 1975; Jones et
al., 1998), the GP variant of the black-box BO that BANANAS (White et al., AAAI 2021) and NASLib compare against.

The GP has a squared-exponential kernel on the one-hot encoding (``space.encode``; the squared distance of two cells
is twice the number of decisions in which they differ). Its length-scale and noise are chosen each step by marginal
likelihood over a small grid, the signal variance in closed form; the acquisition function is maximised, as BANANAS
and NASLib do, over a pool of proposals (mutations of the best so far and uniform draws), not over the whole space.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from lightning_nas.errors import check_counts
from lightning_nas.spaces import SearchSpace
from lightning_nas.strategies.blackbox.predictor import EncodedHistory, propose
from lightning_nas.strategies.evaluators import Evaluations

LENGTHSCALES = (1.0, 2.0, 4.0, 8.0)
"""The kernel's length-scales tried: at 1 a one-edit neighbour correlates 0.37 with a cell, at 8 0.98."""
NOISES = (1e-4, 1e-2, 1e-1, 0.3)
"""Noise variances tried, as a share of the signal variance: exact look-ups (1e-4 keeps the Cholesky stable) to
noisy ones."""
_erf = np.vectorize(math.erf)


def rbf(a: np.ndarray, b: np.ndarray, lengthscale: float) -> np.ndarray:
    """The squared-exponential kernel exp(-|a - b|² / 2ℓ²), rows of ``a`` against rows of ``b``."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-np.maximum(squared, 0.0) / (2 * lengthscale**2))


@dataclass
class GaussianProcess:
    """A zero-mean GP fitted to (``x``, ``y``): covariance ``signal`` x (rbf + ``noise`` x I), its Cholesky factor and
    weights cached once per fit, so a pool of proposals costs one triangular solve."""

    x: np.ndarray
    lengthscale: float
    noise: float
    signal: float
    cholesky: np.ndarray
    weights: np.ndarray
    """(rbf + noise I)^-1 y"""
    log_likelihood: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, lengthscale: float, noise: float,
            signal: float | None = None) -> GaussianProcess:
        """Condition on (``x``, ``y``); ``signal`` None takes the variance that maximises the marginal likelihood
        for this length-scale and noise (y'(K + noise I)^-1 y / n)."""
        n = len(y)
        cholesky = np.linalg.cholesky(rbf(x, x, lengthscale) + noise * np.eye(n))
        weights = np.linalg.solve(cholesky.T, np.linalg.solve(cholesky, y))
        fit = float(y @ weights)
        signal = max(fit / n, 1e-12) if signal is None else signal
        log_likelihood = -0.5 * fit / signal - 0.5 * n * math.log(signal) - float(np.log(np.diag(cholesky)).sum()) \
            - 0.5 * n * math.log(2 * math.pi)
        return cls(x, lengthscale, noise, signal, cholesky, weights, log_likelihood)

    @classmethod
    def select(cls, x: np.ndarray, y: np.ndarray) -> GaussianProcess:
        """The fit of highest marginal likelihood over ``LENGTHSCALES`` x ``NOISES``."""
        return max((cls.fit(x, y, lengthscale, noise) for lengthscale in LENGTHSCALES for noise in NOISES),
                   key=lambda gp: gp.log_likelihood)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The posterior mean and sd of the noise-free function at the rows of ``x``."""
        cross = rbf(x, self.x, self.lengthscale)
        v = np.linalg.solve(self.cholesky, cross.T)
        variance = self.signal * (1.0 - (v * v).sum(0))
        return cross @ self.weights, np.sqrt(np.maximum(variance, 0.0))


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """E[max(f - best, 0)] for f ~ N(mean, sd²): (mean - best) Φ(z) + sd φ(z), z = (mean - best) / sd."""
    gain = mean - best
    safe = np.where(sd > 0, sd, 1.0)
    z = gain / safe
    value = gain * 0.5 * (1 + _erf(z / math.sqrt(2))) + safe * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.where(sd > 0, value, np.maximum(gain, 0.0))


def bayesian_optimisation(space: SearchSpace, evaluations: Evaluations, seed: int, initial: int = 10,
                          proposals: int = 100) -> None:
    """Score ``initial`` random architectures; then, one query at a time, fit the GP to every score so far
    (standardised), propose ``proposals`` unseen architectures (half mutations of the 10 best so far, half random)
    and score the one of highest expected improvement over the best score."""
    check_counts("Bayesian optimisation", initial=initial, proposals=proposals)
    rng = random.Random(seed)
    inputs = len(space.encode(space.sample(rng)))
    history = EncodedHistory(space, evaluations.queries, inputs)
    batch = [space.sample(rng) for _ in range(initial)]
    while not evaluations.done:
        history.score(evaluations, batch)
        if evaluations.done:
            return
        x, standard = history.standardised()
        gp = GaussianProcess.select(x, standard)
        archs = propose(space, rng, history.parents(), history.seen, proposals)
        if not archs:
            return
        mean, sd = gp.predict(np.array([space.encode(arch) for arch in archs]))
        batch = [archs[int(np.argmax(expected_improvement(mean, sd, float(standard.max()))))]]
