"""The predictor-guided search's ensemble: what it learns, and that its refits stay bounded without changing."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_nas.strategies.blackbox.predictor import MLPEnsemble


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def planted(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=20)
    return rng.integers(0, 2, (rows, 20)).astype(float), rng.integers(0, 2, (300, 20)).astype(float), weights


@pytest.mark.parametrize(("shuffled", "low", "high"), [(False, 0.95, 1.0), (True, -0.3, 0.3)])
def test_ensemble_ranks_unseen_encodings_by_a_planted_score(shuffled: bool, low: float, high: float) -> None:
    """A planted linear score is learnt from 200 scores; shuffled scores (the negative control) teach nothing. Mean
    Spearman on 300 unseen encodings over five draws."""
    correlations = []
    for seed in range(5):
        x, test, weights = planted(seed, 200)
        y = x @ weights
        ensemble = MLPEnsemble(20, np.random.default_rng(1))
        ensemble.fit(x, np.random.default_rng(seed).permutation(y) if shuffled else y)
        correlations.append(spearman(ensemble.predict(test), test @ weights))
    assert low <= float(np.mean(correlations)) <= high


def test_a_bounded_sample_changes_nothing_below_its_size_and_still_learns_above_it() -> None:
    x, test, weights = planted(0, 400)
    y = x @ weights
    full, capped, small = (MLPEnsemble(20, np.random.default_rng(1), max_sample=n) for n in (10_000, 400, 100))
    for ensemble in (full, capped, small):
        ensemble.fit(x, y)
    np.testing.assert_array_equal(capped.heads, full.heads)  # 400 scores: the same draws, the same fit
    assert not np.array_equal(small.heads, full.heads)
    assert spearman(small.predict(test), test @ weights) > 0.9  # 100 of 400 scores per refit still rank well
