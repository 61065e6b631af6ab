"""Bayesian optimisation (a Gaussian process with expected improvement on the space's encoding) with proxy training:
``python -m lightning_nas.recipes.bayesian fit --config recipes/bayesian_digits.yaml``.

The black-box recipe (``recipes.blackbox``) with the method fixed to ``bayesian``: ``--space``, ``--num_samples``, the
proxy budget, ``--max_params`` and ``--options`` for the method's hyper-parameters; it resumes from its results file
and shares its work under ``torchrun``.
"""

from __future__ import annotations

from typing import Any

from lightning_nas.recipes.blackbox import main as blackbox


def main(args: list[str] | None = None) -> Any:
    return blackbox(args, method="bayesian")


if __name__ == "__main__":
    main()
