"""Black-box search with proxy training, by any method of ``strategies.blackbox.METHODS``:
``python -m lightning_nas.recipes.blackbox fit --method evolution --config evolution_digits``.

``--method`` picks the method (random, evolution, reinforce, predictor, local, bayesian, zero_cost, or a search
function of your own module by its import path, ``package.module:function``), ``--options`` its hyper-parameters
(``--proxy params`` for a method that ranks by a zero-cost proxy), ``--space`` the space (a
registered one or ``package.module:Class``; ``--nodes``, ``--ops`` its options), ``--data`` the data module (``--data
package.module:Class`` for one of your own), ``--num_samples`` the budget, ``--max_params`` a parameter cap and
``--max_latency_ms`` a cap on the proxy network's measured latency (``--latency_device``, ``--latency_batch_size``;
``spaces.latency``); the proxy budget and data are as the PNAS recipe's. A search resumes from its results file and shares its work under
``torchrun`` (see ``driver``). Each method also has a command of its own with the method fixed, ``python -m
lightning_nas.recipes.<method>`` (``recipes/<method>_digits.yaml`` configs).
"""

from __future__ import annotations

from typing import Any

from lightning_nas.recipes.driver import run_driver
from lightning_nas.strategies.blackbox import METHODS
from lightning_nas.strategies.blackbox_search import BlackBoxSearch


def command(method: str) -> str:
    """The command that runs ``method``: its own recipe, for a method of the table."""
    return f"python -m lightning_nas.recipes.{method}"


def main(args: list[str] | None = None, method: str | None = None) -> Any:
    """Run (or resume) a black-box search; ``method`` fixes the method (each method's own command), else
    ``--method`` picks it."""
    if method is None:
        return run_driver(BlackBoxSearch, "Black-box search with proxy training", args)
    label = METHODS[method].label
    return run_driver(BlackBoxSearch, f"{label[0].upper()}{label[1:]} with proxy training", args,
                      fixed={"method": method}, prog=command(method))


if __name__ == "__main__":
    main()
