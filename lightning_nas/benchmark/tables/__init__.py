"""Benchmark tables shipped with the package, taken by name wherever a table is (``--table nb201-cifar10``).

- ``nb201-cifar10``, ``nb201-cifar100``, ``nb201-imagenet16``: every NAS-Bench-201 cell's test accuracy after 200
  epochs, as NATS-Bench's API gives it (Dong et al., TPAMI 2021), averaged over the benchmark's seeds.
- ``nb201-fmnist``: a uniform sample of NAS-Bench-201 cells trained here on Fashion-MNIST under one budget
  (``python -m lightning_nas.benchmark build``; the budget, data and code key in
  ``nb201_fmnist.results.fingerprint.json``; how it was made and how noisy it is in SEARCH_QUALITY.md).
"""

from __future__ import annotations

from pathlib import Path

from lightning_nas.errors import ConfigError

FOLDER = Path(__file__).resolve().parent
TABLES = {"nb201-cifar10": "nb201_cifar10.csv", "nb201-cifar100": "nb201_cifar100.csv",
          "nb201-imagenet16": "nb201_imagenet16.csv", "nb201-fmnist": "nb201_fmnist.csv"}


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
