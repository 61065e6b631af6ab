"""Benchmark tables: the shipped ones by name, and bad tables refused in one line before any search."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lightning_nas.benchmark.tables import TABLES, BenchmarkTable, resolve_table
from lightning_nas.errors import ConfigError
from lightning_nas.spaces import create_space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.mark.parametrize("name, best, median", [("nb201-cifar10", 94.37, 90.75), ("nb201-cifar100", 73.51, 65.29),
                                                ("nb201-imagenet16", 47.31, 36.39)])
def test_shipped_nb201_tables_hold_the_published_figures(name: str, best: float, median: float) -> None:
    import statistics

    table = BenchmarkTable.read(resolve_table(name), create_space("nb201"))
    assert len(table.scores) == 15_625
    assert table.best == pytest.approx(best, abs=0.005)
    assert statistics.median(table.scores.values()) == pytest.approx(median, abs=0.005)


def test_every_shipped_table_is_installed_with_the_package() -> None:
    """Each table, its README and NATS-Bench's licence notice exist and match the wheel's package-data patterns."""
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lightning_nas.benchmark.tables"]
    folder = resolve_table("nb201-cifar10").parent
    files = [resolve_table(name).name for name in TABLES] + ["README.md", "LICENSE-NATS-Bench"]
    for name in files:
        assert (folder / name).is_file() and any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_an_unknown_table_or_a_folder_ends_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no shipped table of that name; the shipped ones are nb201-cifar10"):
        resolve_table("nb201-cifar11")
    with pytest.raises(ConfigError, match="is a folder"):
        resolve_table(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("rows, message", [
    (f"{BEST},nan\n", "acc is nan; every score must be a finite number"),
    (f"{BEST},inf\n", "every score must be a finite number"),
    (f"{BEST},250\n", "250 is no accuracy in percent"),
    (f"{BEST},-40\n", "-40 is no accuracy in percent"),
    (f"{BEST},90\n{BEST},99.9\n", "line 3: .* is listed twice; keep one row per architecture and seed"),
    (f"{BEST},90,1\n", "line 2: 2 fields expected"),
    (f"{BEST}\n", "line 2: 2 fields expected"),
    ("", "has no rows"),
])
def test_a_bad_table_ends_in_one_line(tmp_path: Path, rows: str, message: str) -> None:
    path = write(tmp_path / "t.csv", "arch,acc\n" + rows)
    with pytest.raises(ConfigError, match=message):
        BenchmarkTable.read(path, create_space("nb201"), complete=False)


def test_a_built_table_averages_its_seeds_and_may_be_a_sample(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "arch,heldout_acc,seed,budget,cpu_s\n"
                                     f"{BEST},80,0,b,10\n{BEST},84,1,b,12\n{ALL_SKIP},70,0,b,8\n")
    space = create_space("nb201")
    table = BenchmarkTable.read(path, space, complete=False)
    assert table.metric == "heldout_acc"
    assert table.lookup(space.from_string(BEST)) == 82
    assert table.runs[space.key(space.from_string(BEST))] == [80, 84]
    assert table.cpu_s == [10, 12, 8]
    with pytest.raises(ConfigError, match="lacks"):  # a sample is no complete table
        BenchmarkTable.read(path, space)
    duplicate = write(tmp_path / "d.csv", "arch,heldout_acc,seed\n" f"{BEST},80,0\n{BEST},81,0\n")
    with pytest.raises(ConfigError, match="listed twice for seed 0"):
        BenchmarkTable.read(duplicate, space, complete=False)


def darts_table(tmp_path: Path, count: int) -> tuple[Path, list]:
    """A table of ``count`` random DARTS cell pairs (a space far too large to list), scored 1, 2, ... in order."""
    import random

    from lightning_nas.spaces.darts import random_genotype

    space = create_space("darts")
    rng = random.Random(0)
    archs = [random_genotype(rng) for _ in range(count)]
    path = tmp_path / "darts.csv"
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([("arch", "score"), *((space.to_string(a), i + 1) for i, a in enumerate(archs))])
    return path, archs


def test_a_partial_table_of_a_large_space_is_refused_before_any_run(tmp_path: Path) -> None:
    """A space too large to check row by row is checked by count: a sample of it fails at once, in one line naming
    how many rows it holds of how many (before, it failed at the first look-up a search made outside it)."""
    import math

    path, _ = darts_table(tmp_path, 3)
    size = math.prod(create_space("darts").choices())
    with pytest.raises(ConfigError) as refused:
        BenchmarkTable.read(path, create_space("darts"))
    assert str(refused.value) == (f"benchmark table {path} holds 3 of the darts space's {size} architectures, and a "
                                  f"search may propose any: give a table of every architecture (a sample of the "
                                  f"space serves `benchmark describe` and the one-shot runs, which read it as one)")
    assert len(BenchmarkTable.read(path, create_space("darts"), complete=False).scores) == 3  # read as a sample


def test_a_budgets_best_is_found_among_the_rows_without_listing_the_space(tmp_path: Path) -> None:
    """``best_within`` under a parameter budget on a space too large to list: the best of the rows that fit (the
    highest-scored row does not fit; the negative control without a budget picks it)."""
    from lightning_nas.benchmark.runs import best_within

    path, archs = darts_table(tmp_path, 6)
    space = create_space("darts")
    table = BenchmarkTable.read(path, space, complete=False)
    with pytest.raises(ConfigError, match="space is too large to list"):
        next(table.architectures())
    counts = [space.num_params(arch, 10, 3) for arch in archs]
    budget = sorted(counts)[2]  # three of the six fit
    fitting = [i for i, count in enumerate(counts) if count <= budget]
    assert counts[-1] > budget, "the planted best must not fit"  # random_genotype(seed 0): checked, not assumed
    assert best_within(table, space.with_budget(budget)) == space.key(archs[max(fitting)])
    assert best_within(table, space) == space.key(archs[-1])
