"""Predictor-guided search (PNAS's ensemble predictor on the space's encoding) with proxy training:
``python -m lightning_nas.recipes.predictor fit --config recipes/predictor_digits.yaml``.

The black-box recipe (``recipes.blackbox``) with the method fixed to ``predictor``: ``--space``, ``--num_samples``, the
proxy budget, ``--max_params`` and ``--options`` for the method's hyper-parameters; it resumes from its results file
and shares its work under ``torchrun``.
"""

from __future__ import annotations

from typing import Any

from lightning_nas.recipes.blackbox import main as blackbox


def main(args: list[str] | None = None) -> Any:
    return blackbox(args, method="predictor")


if __name__ == "__main__":
    main()
