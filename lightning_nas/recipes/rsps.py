"""Random search with parameter sharing: ``python -m lightning_nas.recipes.rsps fit --config
recipes/rsps_nb201_fmnist.yaml``.

The supernet's shared weights train along one uniformly drawn architecture per batch; at the end the best of
``--model.eval_samples`` drawn architectures by held-out accuracy on those weights is written to ``genotype.json``
next to the checkpoints (``{"arch": "|op~0|+|...|"}`` on NAS-Bench-201).
"""

from __future__ import annotations

from lightning_nas.recipes.cli import NASCLI, run_recipe
from lightning_nas.recipes.errors import one_line_errors
from lightning_nas.strategies.rsps import RSPS


def main(args: list[str] | None = None, run: bool = True) -> NASCLI:
    """``run=False`` only parses and instantiates (no subcommand in ``args``)."""
    with one_line_errors():
        return run_recipe(RSPS, args, run=run)


if __name__ == "__main__":
    main()
