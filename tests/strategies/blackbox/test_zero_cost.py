"""Training-free search and the warm starts: a planted proxy equal to the reward, one of reversed sign, and the
refusals without a proxy."""

from __future__ import annotations

import random
from typing import Sequence

import pytest

from lightning_nas.errors import ConfigError
from lightning_nas.spaces import Architecture, create_space
from lightning_nas.strategies.blackbox import METHODS, predictor_guided, regularized_evolution, zero_cost
from lightning_nas.strategies.blackbox.zero_cost import proxy_ranked
from lightning_nas.strategies.evaluators import Evaluations, Evaluator

SPACE = create_space("nb201")


def reward(arch: Architecture) -> float:
    """A planted score with one best cell: each nor_conv_3x3 edge counts 10, each nor_conv_1x1 edge 1, by position."""
    return sum(10.0 * (op == "nor_conv_3x3") + (op == "nor_conv_1x1") * (1 + edge) / 10
               for edge, op in enumerate(arch.ops))


class Planted(Evaluator):
    space = SPACE

    def score(self, archs: Sequence[Architecture]) -> list[float]:
        return [reward(arch) for arch in archs]


def evaluations(sign: float | None, queries: int = 20) -> Evaluations:
    proxy = None if sign is None else (lambda archs: [sign * reward(arch) for arch in archs])
    return Evaluations(Planted(), queries, proxy=proxy)


def drawn(count: int, seed: int) -> list[Architecture]:
    """The draws a search of ``seed`` ranks (proxy_ranked's, by a proxy that keeps the draw order)."""
    return proxy_ranked(SPACE, evaluations(0.0), random.Random(seed), count, "test")


def test_a_proxy_equal_to_the_reward_finds_the_best_in_one_query_and_a_reversed_one_does_not() -> None:
    best = max(reward(arch) for arch in drawn(3000, 7))
    exact = evaluations(1.0)
    zero_cost(SPACE, exact, 7, samples=3000)
    assert exact.history[0][1] == best and len(exact.history) == 20
    assert [score for _, score in exact.history] == sorted((score for _, score in exact.history), reverse=True)
    reversed_ = evaluations(-1.0)
    zero_cost(SPACE, reversed_, 7, samples=3000)
    assert reversed_.best()[1] < best  # the 20 worst by the reward: none is the best
    assert reversed_.history[0][1] == min(reward(arch) for arch in drawn(3000, 7))


def test_warm_start_takes_the_proxys_best_as_the_first_population_and_training_set() -> None:
    for search, size in ((regularized_evolution, "population"), (predictor_guided, "initial")):
        top = sorted(drawn(200, 3), key=reward, reverse=True)[:5]
        warm = evaluations(1.0, queries=30)
        search(SPACE, warm, 3, **{size: 5, "warm_start": 200})
        assert [SPACE.key(arch) for arch, _ in warm.history[:5]] == [SPACE.key(arch) for arch in top]
        cold = evaluations(1.0, queries=30)
        search(SPACE, cold, 3, **{size: 5})
        assert sum(score for _, score in cold.history[:5]) < sum(score for _, score in warm.history[:5])


@pytest.mark.parametrize("search, options, message", [
    (zero_cost, {}, "training-free search ranks architectures by a zero-cost proxy and none was given: pass --proxy"),
    (regularized_evolution, {"warm_start": 100}, "regularized evolution with warm_start ranks architectures by a "
                                                 "zero-cost proxy and none was given"),
    (predictor_guided, {"warm_start": 100}, "predictor-guided search with warm_start ranks architectures by a "
                                            "zero-cost proxy and none was given"),
])
def test_a_search_that_needs_a_proxy_is_refused_in_one_line_before_any_query(search, options, message) -> None:
    without = evaluations(None)
    with pytest.raises(ConfigError, match=message) as error:
        search(SPACE, without, 0, **options)
    assert "\n" not in str(error.value) and not without.history
    assert METHODS["zero_cost"].needs_proxy and not METHODS["evolution"].needs_proxy


@pytest.mark.parametrize("search, options, message", [
    (regularized_evolution, {"warm_start": 10}, "warm_start=10 must be 0 .off. or at least population=20"),
    (predictor_guided, {"warm_start": 5}, "warm_start=5 must be 0 .off. or at least initial=10"),
    (zero_cost, {"samples": 0}, "training-free search: samples=0 must be a whole number >= 1"),
])
def test_bad_options_end_in_one_line(search, options, message) -> None:
    planted = evaluations(1.0)
    with pytest.raises(ConfigError, match=message):
        search(SPACE, planted, 0, **options)
    assert not planted.history
