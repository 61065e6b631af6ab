"""``python -m lightning_nas.quality --strategy S --config recipes/quality/<S>_<data>.yaml [--seeds 3 --random 8]``:
search S times, retrain the found and random architectures under one budget, print the table, write JSON and PNG."""

from __future__ import annotations

from typing import Any

from lightning_nas.quality.report import QualityReport
from lightning_nas.recipes.driver import run_driver


def main(args: list[str] | None = None) -> dict[str, Any]:
    return run_driver(QualityReport, "found-vs-random report", args, subcommand=None)


if __name__ == "__main__":
    main()
