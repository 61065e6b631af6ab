"""Benchmark tables shipped with the package, taken by name wherever a table is (``--table nb201-cifar10``).

- ``nb201-cifar10``, ``nb201-cifar100``, ``nb201-imagenet16``: every NAS-Bench-201 cell's test accuracy after 200
  epochs, as NATS-Bench's API gives it (Dong et al., TPAMI 2021), averaged over the benchmark's seeds.
- ``nb201-fmnist``: a uniform sample of NAS-Bench-201 cells trained here on Fashion-MNIST under one budget
  (``python -m lightning_nas.benchmark build``; the budget, data and code key in
  ``nb201_fmnist.results.fingerprint.json``; how it was made and how noisy it is in SEARCH_QUALITY.md).

``BenchmarkTable.read`` reads one (shipped or not, a CSV or a gzip-compressed ``.csv.gz``) against a search space and checks it before any search;
``strategies.evaluators.TableEvaluator`` scores by look-up in it. Reading a table loads neither torch nor Lightning.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from lightning_nas.errors import ConfigError, check

if TYPE_CHECKING:  # a table takes the space it is read against: importing one loads no torch
    from lightning_nas.spaces import Architecture, SearchSpace

FOLDER = Path(__file__).resolve().parent
TABLES = {"nb201-cifar10": "nb201_cifar10.csv.gz", "nb201-cifar100": "nb201_cifar100.csv.gz",
          "nb201-imagenet16": "nb201_imagenet16.csv.gz", "nb201-fmnist": "nb201_fmnist.csv"}
"""Shipped tables by name; NAS-Bench-201's are gzip-compressed (about 95 kB each; where they come from and their
licence in README.md beside them)."""


def resolve_table(table: str | Path) -> Path:
    """A shipped table's path by its name, or the CSV file ``table``; anything else ends in one line."""
    if str(table) in TABLES:
        return FOLDER / TABLES[str(table)]
    path = Path(table)
    if path.is_dir():
        raise ConfigError(f"--table {table} is a folder; give a CSV file or a shipped table ({', '.join(TABLES)})")
    if not path.is_file():
        raise ConfigError(f"--table {table}: no such file and no shipped table of that name; the shipped ones are "
                          f"{', '.join(TABLES)}")
    return path


ENUMERABLE = 100_000
"""Spaces up to this size are listed in full: a benchmark table must hold every architecture of them."""

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
    archs: dict[str, Architecture] = field(default_factory=dict)
    """Each row's architecture, by key: what a budget's best is chosen among, with no listing of the space."""

    @classmethod
    def read(cls, path: str | Path, space: SearchSpace, metric: str | None = None, arch_column: str = "arch",
             complete: bool = True) -> BenchmarkTable:
        rows, columns = read_rows(path, "benchmark table", arch_column)
        metrics = [name for name in columns if name != arch_column and name not in RUN_COLUMNS]
        if metric is None:
            if len(metrics) != 1:
                raise ConfigError(f"benchmark table {path} has {len(metrics)} metric columns ({', '.join(metrics)}); "
                                  f"pick one with --metric")
            metric = metrics[0]
        if metric not in metrics:
            raise ConfigError(f"benchmark table {path} has no column {metric!r}; its metric columns are "
                              f"{', '.join(metrics)}")
        runs: dict[str, dict[str, float]] = {}
        archs: dict[str, Architecture] = {}
        cpu_s: list[float] = []
        for line, row in enumerate(rows, start=2):
            arch = _architecture(path, line, space, row[arch_column], "benchmark table")
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
            archs[key] = arch
            if row.get("cpu_s"):
                cpu_s.append(_number(path, line, "cpu_s", row["cpu_s"]))
        scores = {key: statistics.fmean(by_seed.values()) for key, by_seed in runs.items()}
        table = cls(space, scores, metric, str(path), {key: list(v.values()) for key, v in runs.items()}, cpu_s,
                    archs)
        if complete:
            table.check_complete()
        return table

    def check_complete(self) -> None:
        """Every architecture of the space must be in the table, since a black-box search may propose any: checked
        one by one for spaces of at most 10^5 architectures, by count for larger ones (a table of fewer rows than
        the space's decision lists is refused; a space mapping several lists to one architecture, as PNAS's, is
        counted high), so a partial table fails here, before any run, rather than at its first missing look-up."""
        size = math.prod(self.space.choices())
        fix = ("give a table of every architecture (a sample of the space serves `benchmark describe` and the "
               "one-shot runs, which read it as one)")
        check(size <= ENUMERABLE or len(self.scores) >= size,
              f"benchmark table {self.path} holds {len(self.scores)} of the {self.space.name} space's {size} "
              f"architectures, and a search may propose any: {fix}")
        if size > ENUMERABLE:
            return
        for arch in self.architectures():
            if self.space.key(arch) not in self.scores:
                raise ConfigError(f"benchmark table {self.path} lacks {self.space.to_string(arch)} (and maybe others): "
                                  f"it holds {len(self.scores)} of the {self.space.name} space's {size} "
                                  f"architectures; {fix}")

    def architectures(self) -> Iterator[Architecture]:
        return every_architecture(self.space)

    def lookup(self, arch: Architecture) -> float:
        key = self.space.key(arch)
        if key not in self.scores:
            raise ConfigError(f"benchmark table {self.path} has no entry for {self.space.to_string(arch)}")
        return self.scores[key]

    @property
    def best(self) -> float:
        return max(self.scores.values())


def every_architecture(space: SearchSpace) -> Iterator[Architecture]:
    """Every architecture of a space of at most 10^5 (every combination of its decisions)."""
    check(math.prod(space.choices()) <= ENUMERABLE, f"the {space.name} space is too large to list")
    for decisions in itertools.product(*(range(n) for n in space.choices())):
        yield space.decode(decisions)


def read_rows(path: str | Path, what: str, arch_column: str = "arch") -> tuple[list[dict[str, str]], list[str]]:
    """The rows and columns of the CSV (or ``.csv.gz``) ``path``, each row complete and an architecture column
    present; ``what`` names the file in the one-line errors."""
    try:
        with (gzip.open(path, "rt", newline="") if str(path).endswith(".gz") else open(path, newline="")) as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{what} {path}: cannot read it as CSV ({error})") from None
    if arch_column not in columns:
        raise ConfigError(f"{what} {path} has no architecture column {arch_column!r}; its columns are "
                          f"{', '.join(columns) or 'none'}")
    check(bool(rows), f"{what} {path} has no rows")
    for line, row in enumerate(rows, start=2):
        if None in row or any(row[name] is None for name in columns):
            raise ConfigError(f"{what} {path} line {line}: {len(columns)} fields expected ({', '.join(columns)}); "
                              "repair that row")
    return rows, columns


def _architecture(path: str | Path, line: int, space: SearchSpace, text: str, what: str) -> Architecture:
    try:
        arch = space.from_string(text)
        space.decisions(arch)
    except ConfigError as error:
        raise ConfigError(f"{what} {path} line {line}: {text!r} is not an architecture of the {space.name} space "
                          f"({error}); pass the table of that space") from None
    return arch


def _number(path: str | Path, line: int, column: str, text: str, what: str = "benchmark table") -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what} {path} line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what} {path} line {line}: {column} is {text}; every score must be a finite number")
    return value


PROXY_TABLE = FOLDER / "nb201_proxies.csv.gz"
"""Zero-cost proxy scores of every NAS-Bench-201 cell (``python -m lightning_nas.benchmark proxies``), the benchmark's
``--proxy`` look-up by default."""


@dataclass
class ProxyTable:
    """Zero-cost proxy scores of a space's architectures (columns ``arch`` and one per proxy; an empty field: not
    computed), read against the space like a ``BenchmarkTable``. ``scorer`` looks a proxy up, or the vote of several.
    A proxy a search may need must be there for every architecture it may propose: ``read`` refuses, in one line, a
    column with empty fields for any of them."""

    space: SearchSpace
    columns: dict[str, dict[str, float]]
    """Each proxy's scores, by architecture key."""
    path: str

    @classmethod
    def read(cls, path: str | Path, space: SearchSpace, proxies: list[str]) -> ProxyTable:
        what = "proxy table"
        rows, columns = read_rows(path, what)
        known = [name for name in columns if name != "arch"]
        unknown = [name for name in proxies if name not in known]
        check(bool(proxies) and not unknown, f"{what} {path} has no column {', '.join(unknown) or '(none named)'}; "
                                             f"its proxies are {', '.join(known)}")
        scores: dict[str, dict[str, float]] = {name: {} for name in proxies}
        for line, row in enumerate(rows, start=2):
            key = space.key(_architecture(path, line, space, row["arch"], what))
            for name in proxies:
                if row[name].strip():
                    scores[name][key] = _number(path, line, name, row[name], what)
        table = cls(space, scores, str(path))
        if math.prod(space.choices()) <= ENUMERABLE:
            proposable = [arch for arch in every_architecture(space) if space.fits(arch)]
            for name in proxies:
                missing = [arch for arch in proposable if space.key(arch) not in scores[name]]
                if missing:
                    raise ConfigError(f"{what} {path}: {name} is empty or absent for {len(missing)} of the "
                                      f"{len(proposable)} architectures a search may propose (e.g. "
                                      f"{space.to_string(missing[0])}); compute that column first or pick another "
                                      "proxy")
        return table

    def scorer(self) -> Callable[[Sequence[Architecture]], list[float]]:
        """One proxy: its scores. Several: their vote, each architecture's mean over proxies of its rank among the
        table's architectures (ties share their mean rank), so proxies of different units weigh alike."""
        if len(self.columns) == 1:
            (column,) = self.columns.values()
        else:
            column = {key: statistics.fmean(votes) for key, *votes in zip(self._keys(), *self._ranks())}
        return lambda archs: [column[self.space.key(arch)] for arch in archs]

    def _keys(self) -> list[str]:
        return sorted(set.intersection(*(set(scores) for scores in self.columns.values())))

    def _ranks(self) -> list[list[float]]:
        keys = self._keys()
        ranks = []
        for scores in self.columns.values():
            values = np.array([scores[key] for key in keys])
            order = np.empty(len(values))
            order[np.argsort(values, kind="stable")] = np.arange(len(values))
            _, tie, count = np.unique(values, return_inverse=True, return_counts=True)
            ranks.append((np.bincount(tie, order) / count)[tie].tolist())
        return ranks
