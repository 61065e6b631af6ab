"""The train recipe: a found architecture trained from scratch.

    python -m lightning_nas.recipes.train fit --config recipes/train_cifar10.yaml

``--model.genotype DARTS_V2`` picks a published cell, ``--model.genotype runs/search/genotype.json`` the cell a search
wrote. Bad input (a malformed genotype, images the network cannot take, a missing dataset) and a diverged loss end
with one line ``error: ...`` and exit status 1 instead of a traceback. ``--ckpt_path .../last.ckpt`` resumes a run,
``--ckpt_path last`` the last run in the same ``--trainer.default_root_dir``;
``--trainer.callbacks+=EMAWeightAveraging --trainer.callbacks.decay 0.9998`` validates and saves an EMA of the weights.
``fit``, ``validate``, ``test`` and ``predict`` (class probabilities of the test images) are offered; the optimizer
and schedule are the model's (``--model.lr``, ``--model.scheduler``, ...), ``--optimizer`` is refused.
"""

from __future__ import annotations

from lightning_nas.recipes.cli import one_line_errors, run_recipe
from lightning_nas.strategies.final_training import FinalTraining


def main(args: list[str] | None = None) -> None:
    with one_line_errors():
        run_recipe(FinalTraining, args)


if __name__ == "__main__":
    main()
