"""Evaluators: the seam where a score for an architecture comes from, so every black-box strategy runs unchanged on
proxy training or on a benchmark table (NASLib's split).

``Evaluator.score(archs)`` scores a batch (a training evaluator shares a batch among ``torchrun`` ranks);
``Evaluations`` is one search's view of an evaluator: it scores each distinct architecture once (a query, the unit
of cost), keeps the history in query order and says when the budget is spent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from lightning_nas.errors import ConfigError
from lightning_nas.spaces import Architecture, SearchSpace

if TYPE_CHECKING:  # proxy training needs Lightning; a look-up in a table does not load it
    from lightning_nas.strategies.candidates import CandidatePool


class Evaluator:
    """Scores architectures of one space; higher is better."""

    space: SearchSpace

    def score(self, archs: Sequence[Architecture]) -> list[float]:
        raise NotImplementedError


class ScoreTable(Protocol):
    """What a table evaluator looks scores up in: ``benchmark.tables.BenchmarkTable`` (a benchmark's table, read and
    checked against its space)."""

    space: SearchSpace

    def lookup(self, arch: Architecture) -> float: ...


class TableEvaluator(Evaluator):
    """Scores by look-up in a benchmark table, plus Gaussian noise of sd ``noise`` (seeded) to stand for training
    noise: a repeated query of one search is answered from its cache, so each architecture gets one draw."""

    def __init__(self, table: ScoreTable, noise: float = 0.0, seed: int = 0) -> None:
        if not (0 <= noise < math.inf):
            raise ConfigError(f"noise={noise}: the noise sd must be a finite number >= 0")
        self.table, self.space, self.noise = table, table.space, noise
        self.rng = random.Random(seed)

    def score(self, archs: Sequence[Architecture]) -> list[float]:
        return [self.table.lookup(arch) + (self.rng.gauss(0.0, self.noise) if self.noise else 0.0) for arch in archs]


class TrainingEvaluator(Evaluator):
    """Scores by proxy training (``CandidatePool``: results file, resume, ``torchrun`` ranks sharing a batch): the
    held-out accuracy of each architecture's proxy network."""

    def __init__(self, pool: CandidatePool, name: str = "candidates") -> None:
        self.pool, self.space, self.name = pool, pool.space, name
        self.batches = 0

    def score(self, archs: Sequence[Architecture]) -> list[float]:
        self.batches += 1
        by_key = {self.space.key(arch): arch for arch in archs}
        results = self.pool.train_all(f"{self.name} batch {self.batches}", list(by_key),
                                      lambda key: self.pool.train(key, by_key[key])[1])
        return [results[self.space.key(arch)]["accuracy"] for arch in archs]


@dataclass
class Evaluations:
    """One search's queries: each distinct architecture is scored once, at most ``queries`` of them."""

    evaluator: Evaluator
    queries: int
    history: list[tuple[Architecture, float]] = field(default_factory=list)
    calls: int = 0
    _scores: dict[str, float] = field(default_factory=dict)
    on_queries: Callable[[int], None] | None = None
    """Told how many new queries each call spent (a progress bar within one long search)."""
    proxy: Callable[[Sequence[Architecture]], list[float]] | None = None
    """A zero-cost score of architectures (higher is better; a proxy computed at initialisation, or a look-up of one),
    which costs no query: training-free search ranks by it, warm starts pick their first architectures by it."""

    @property
    def space(self) -> SearchSpace:
        return self.evaluator.space

    @property
    def done(self) -> bool:
        """The budget is spent, or the search keeps proposing what it has seen (10 calls per query allowed: a
        converged policy or population ends there)."""
        return len(self.history) >= self.queries or self.calls >= 10 * self.queries

    def __call__(self, archs: Sequence[Architecture]) -> list[tuple[Architecture, float]]:
        """``archs`` with their scores; new ones cost a query each, in order, while the budget lasts (those beyond
        it are left out)."""
        self.calls += 1
        keys = [self.space.key(arch) for arch in archs]
        new: dict[str, Architecture] = {}
        for arch, key in zip(archs, keys):
            if key not in self._scores and key not in new and len(self.history) + len(new) < self.queries:
                new[key] = arch
        for (key, arch), value in zip(new.items(), self.evaluator.score(list(new.values()))):
            self._scores[key] = value
            self.history.append((arch, value))
        if self.on_queries is not None and new:
            self.on_queries(len(new))
        return [(arch, self._scores[key]) for arch, key in zip(archs, keys) if key in self._scores]

    def require_proxy(self, who: str) -> Callable[[Sequence[Architecture]], list[float]]:
        """The proxy, or one line saying that ``who`` needs one (before any query is spent)."""
        if self.proxy is None:
            raise ConfigError(f"{who} ranks architectures by a zero-cost proxy and none was given: pass --proxy "
                              "(the benchmark: a column of the proxy table, e.g. synflow; the recipes: params)")
        return self.proxy

    def best(self) -> tuple[Architecture, float]:
        return max(self.history, key=lambda item: item[1])


def best_so_far(values: Sequence[float]) -> list[float]:
    """The running maximum of ``values``."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else max(out[-1], value))
    return out

