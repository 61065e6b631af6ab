"""``python -m lightning_nas.quality --strategy S --config recipes/quality/<S>_<data>.yaml [--seeds 3 --random 8]``:
search S times, retrain the found and random architectures under one budget, print the table, write JSON and PNG."""

from __future__ import annotations

from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_nas.data import NASDataModule
from lightning_nas.quality.report import QualityReport
from lightning_nas.recipes.cli import one_line_errors


def main(args: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(QualityReport, skip={"data"})
    parser.add_subclass_arguments(NASDataModule, "data")
    with one_line_errors():
        config = parser.instantiate(parser.parse_args(args))
        config.pop("config", None)
        return QualityReport(**config).run()


if __name__ == "__main__":
    main()
