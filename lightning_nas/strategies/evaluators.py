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
import statistics
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


RUN_COLUMNS = ("seed", "budget", "cpu_s")
"""Columns of a table built here (``benchmark build``) that describe a row's training run, not a metric."""


@dataclass
class BenchmarkTable:
    """A benchmark's table of architectures and a metric (e.g. NAS-Bench-201's CIFAR-10 accuracies), read once and
    checked against the space before any search: an unknown column, an architecture of another space, a score that
    is not a finite number (or, for an accuracy column ``*_acc*``, outside 0-100), one architecture listed twice for
    one seed, or (for a complete table of a space small enough to list) a missing architecture end in one line.

    A built table (``benchmark build``) may list a cell once per training seed (column ``seed``): its score is the
    mean over seeds, as NAS-Bench-201's is; ``cpu_s``, where present, is the one-thread CPU-seconds of a cell's
    training. ``complete=False`` reads a table of a sample of the space (look-ups outside it fail)."""

    space: SearchSpace
    scores: dict[str, float]
    metric: str
    path: str
    runs: dict[str, list[float]] = field(default_factory=dict)
    """Every seed's score of each architecture (a built table's repeats), by key."""
    cpu_s: list[float] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path, space: SearchSpace, metric: str | None = None, arch_column: str = "arch",
             complete: bool = True) -> BenchmarkTable:
        try:
            with open(path, newline="") as file:
                reader = csv.DictReader(file)
                rows = list(reader)
                columns = list(reader.fieldnames or [])
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise ConfigError(f"benchmark table {path}: cannot read it as CSV ({error})") from None
        if arch_column not in columns:
            raise ConfigError(f"benchmark table {path} has no architecture column {arch_column!r}; its columns are "
                              f"{', '.join(columns) or 'none'}")
        metrics = [name for name in columns if name != arch_column and name not in RUN_COLUMNS]
        if metric is None:
            if len(metrics) != 1:
                raise ConfigError(f"benchmark table {path} has {len(metrics)} metric columns ({', '.join(metrics)}); "
                                  f"pick one with --metric")
            metric = metrics[0]
        if metric not in metrics:
            raise ConfigError(f"benchmark table {path} has no column {metric!r}; its metric columns are "
                              f"{', '.join(metrics)}")
        check(bool(rows), f"benchmark table {path} has no rows")
        runs: dict[str, dict[str, float]] = {}
        cpu_s: list[float] = []
        for line, row in enumerate(rows, start=2):
            if None in row or any(row[name] is None for name in columns):
                raise ConfigError(f"benchmark table {path} line {line}: {len(columns)} fields expected "
                                  f"({', '.join(columns)}); repair that row")
            try:
                arch = space.from_string(row[arch_column])
                space.decisions(arch)
            except ConfigError as error:
                raise ConfigError(f"benchmark table {path} line {line}: {row[arch_column]!r} is not an architecture of "
                                  f"the {space.name} space ({error}); pass the table of that space") from None
            value = _number(path, line, metric, row[metric])
            if "acc" in metric and not 0 <= value <= 100:
                raise ConfigError(f"benchmark table {path} line {line}: {metric} {value:g} is no accuracy in percent "
                                  f"(0-100)")
            seed = row.get("seed", "")
            key = space.key(arch)
            if seed in runs.setdefault(key, {}):
                raise ConfigError(f"benchmark table {path} line {line}: {row[arch_column]} is listed twice"
                                  + (f" for seed {seed}" if seed else "") + "; keep one row per architecture and seed")
            runs[key][seed] = value
            if row.get("cpu_s"):
                cpu_s.append(_number(path, line, "cpu_s", row["cpu_s"]))
        scores = {key: statistics.fmean(by_seed.values()) for key, by_seed in runs.items()}
        table = cls(space, scores, metric, str(path), {key: list(v.values()) for key, v in runs.items()}, cpu_s)
        if complete:
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


def _number(path: str | Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"benchmark table {path} line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"benchmark table {path} line {line}: {column} is {text}; every score must be a finite number")
    return value


class TableEvaluator(Evaluator):
    """Scores by look-up in a benchmark table, plus Gaussian noise of sd ``noise`` (seeded) to stand for training
    noise: a repeated query of one search is answered from its cache, so each architecture gets one draw."""

    def __init__(self, table: BenchmarkTable, noise: float = 0.0, seed: int = 0) -> None:
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

