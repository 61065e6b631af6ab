"""Evaluators: the seam where a score for an architecture comes from, so every black-box strategy runs unchanged on
proxy training or on a benchmark table (NASLib's split).

``Evaluator.score(archs)`` scores a batch (a training evaluator shares a batch among ``torchrun`` ranks);
``Evaluations`` is one search's view of an evaluator: it scores each distinct architecture once (a query, the unit
of cost), keeps the history in query order and says when the budget is spent.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from lightning_nas.errors import ConfigError, check
from lightning_nas.spaces import Architecture, SearchSpace
from lightning_nas.strategies.candidates import CandidatePool


ENUMERABLE = 100_000
"""Spaces up to this size are listed in full: a benchmark table must hold every architecture of them."""


class Evaluator:
    """Scores architectures of one space; higher is better."""

    space: SearchSpace

    def score(self, archs: Sequence[Architecture]) -> list[float]:
        raise NotImplementedError


@dataclass
class BenchmarkTable:
    """A benchmark's table of architectures and a metric (e.g. NAS-Bench-201's CIFAR-10 accuracies), read once and
    checked against the space before any search: an unknown column, an architecture of another space, or (for a space
    small enough to list) a missing architecture end in one line."""

    space: SearchSpace
    scores: dict[str, float]
    metric: str
    path: str

    @classmethod
    def read(cls, path: str | Path, space: SearchSpace, metric: str | None = None, arch_column: str = "arch") -> BenchmarkTable:
        try:
            with open(path, newline="") as file:
                rows = list(csv.DictReader(file))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise ConfigError(f"benchmark table {path}: cannot read it as CSV ({error})") from None
        columns = list(rows[0]) if rows else []
        if arch_column not in columns:
            raise ConfigError(f"benchmark table {path} has no architecture column {arch_column!r}; its columns are "
                              f"{', '.join(columns) or 'none'}")
        metrics = [name for name in columns if name != arch_column]
        if metric is None:
            if len(metrics) != 1:
                raise ConfigError(f"benchmark table {path} has {len(metrics)} metric columns ({', '.join(metrics)}); "
                                  f"pick one with --metric")
            metric = metrics[0]
        if metric not in metrics:
            raise ConfigError(f"benchmark table {path} has no column {metric!r}; its metric columns are "
                              f"{', '.join(metrics)}")
        scores: dict[str, float] = {}
        for line, row in enumerate(rows, start=2):
            try:
                arch = space.from_string(row[arch_column])
                space.decisions(arch)
            except ConfigError as error:
                raise ConfigError(f"benchmark table {path} line {line}: {row[arch_column]!r} is not an architecture of "
                                  f"the {space.name} space ({error}); pass the table of that space") from None
            try:
                scores[space.key(arch)] = float(row[metric])
            except ValueError:
                raise ConfigError(f"benchmark table {path} line {line}: {metric} {row[metric]!r} is not a number") from None
        table = cls(space, scores, metric, str(path))
        table.check_complete()
        return table

    def check_complete(self) -> None:
        """For spaces of at most 10^5 architectures, every one must be in the table (a search may propose any)."""
        if math.prod(self.space.choices()) > ENUMERABLE:
            return
        for arch in self.architectures():
            if self.space.key(arch) not in self.scores:
                raise ConfigError(f"benchmark table {self.path} lacks {self.space.to_string(arch)} (and maybe others): "
                                  f"it holds {len(self.scores)} of the {self.space.name} space's "
                                  f"{math.prod(self.space.choices())} architectures")

    def architectures(self) -> Iterator[Architecture]:
        """Every architecture of a space of at most 10^5 (every combination of its decisions)."""
        check(math.prod(self.space.choices()) <= ENUMERABLE, f"the {self.space.name} space is too large to list")
        for decisions in itertools.product(*(range(n) for n in self.space.choices())):
            yield self.space.decode(decisions)

    def lookup(self, arch: Architecture) -> float:
        key = self.space.key(arch)
        if key not in self.scores:
            raise ConfigError(f"benchmark table {self.path} has no entry for {self.space.to_string(arch)}")
        return self.scores[key]

    @property
    def best(self) -> float:
        return max(self.scores.values())


class TableEvaluator(Evaluator):
    """Scores by look-up in a benchmark table, plus Gaussian noise of sd ``noise`` (seeded) to stand for training
    noise: a repeated query of one search is answered from its cache, so each architecture gets one draw."""

    def __init__(self, table: BenchmarkTable, noise: float = 0.0, seed: int = 0) -> None:
        if noise < 0:
            raise ConfigError(f"noise={noise}: the noise sd must be >= 0")
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
        return [(arch, self._scores[key]) for arch, key in zip(archs, keys) if key in self._scores]

    def best(self) -> tuple[Architecture, float]:
        return max(self.history, key=lambda item: item[1])


def best_so_far(values: Sequence[float]) -> list[float]:
    """The running maximum of ``values``."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else max(out[-1], value))
    return out

