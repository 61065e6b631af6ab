"""Predictor-guided search (PNAS's ensemble predictor on the space's encoding) with proxy training:
``python -m lightning_nas.recipes.predictor fit --config recipes/predictor_digits.yaml``.

The same arguments as the random-search recipe (``--space``, ``--num_samples``, the proxy budget, ``--max_params``)
plus ``--options`` for the strategy's hyper-parameters; resumes from its results file, shares work under ``torchrun``.
"""

from __future__ import annotations

from typing import Any

from lightning_nas.recipes.driver import run_driver
from lightning_nas.strategies.blackbox_search import PredictorGuided


def main(args: list[str] | None = None) -> Any:
    return run_driver(PredictorGuided, "Predictor-guided search", args)


if __name__ == "__main__":
    main()
