"""The predictor-guided search's ensemble: its online bootstrap fit against the closed form, and what it learns."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_nas.strategies.blackbox.predictor import MLPEnsemble


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


class UnitWeights:
    """A generator whose Poisson draws are all 1: every score in every member's sample once."""

    def poisson(self, lam: float, size: tuple[int, int]) -> np.ndarray:
        return np.ones(size)


def test_batches_added_then_fit_equal_ridge_on_the_standardised_targets() -> None:
    """With every bootstrap weight 1, the kept sums give what a ridge fit on all scores, standardised, gives."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 2, (60, 12)).astype(float), rng.normal(90.0, 2.0, 60)
    ensemble = MLPEnsemble(12, np.random.default_rng(1), members=3, hidden=16, ridge=0.5)
    ensemble.rng = UnitWeights()  # type: ignore[assignment]
    for part in np.array_split(np.arange(60), 4):
        ensemble.add(x[part], y[part])
    ensemble.fit(float(y.mean()), float(y.std()))
    phi = ensemble.features(x)
    for m in range(3):
        expected = np.linalg.solve(phi[m].T @ phi[m] + 0.5 * np.eye(17), phi[m].T @ ((y - y.mean()) / y.std()))
        np.testing.assert_allclose(ensemble.heads[m], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("shuffled", "low", "high"), [(False, 0.95, 1.0), (True, -0.3, 0.3)])
def test_ensemble_fit_in_batches_ranks_unseen_encodings_by_a_planted_score(shuffled: bool, low: float,
                                                                           high: float) -> None:
    """A planted linear score is learnt from 200 scores added ten at a time; shuffled scores (the negative control)
    teach nothing. Mean Spearman on 300 unseen encodings over five draws."""
    correlations = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        weights = rng.normal(size=20)
        x, test = rng.integers(0, 2, (200, 20)).astype(float), rng.integers(0, 2, (300, 20)).astype(float)
        y = rng.permutation(x @ weights) if shuffled else x @ weights
        ensemble = MLPEnsemble(20, np.random.default_rng(1))
        for start in range(0, 200, 10):
            ensemble.add(x[start:start + 10], y[start:start + 10])
        ensemble.fit(float(y.mean()), float(y.std()))
        correlations.append(spearman(ensemble.predict(test), test @ weights))
    assert low <= float(np.mean(correlations)) <= high
