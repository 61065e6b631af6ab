"""The train recipe: a found architecture trained from scratch.

    python -m lightning_nas.recipes.train fit --config recipes/train_cifar10.yaml

``--model.genotype DARTS_V2`` picks a published cell, ``--model.genotype runs/search/genotype.json`` the cell a search
wrote. ``--model.space`` names the registered search space the architecture belongs to (``darts`` by default; its
DARTS-style cells, and ``enas_micro``'s and ``pnas``'s, train in the published networks): any other space's
architecture trains in the network the space builds, e.g. a NAS-Bench-201 cell

    python -m lightning_nas.recipes.train fit --config train_nb201_fmnist --model.genotype '|nor_conv_3x3~0|+|...|'

or an ENAS macro search's ``genotype.json`` (``--config train_enas_macro_cifar10``). Bad input (an unknown space, an
architecture that does not parse in its space, a malformed genotype file, images the network cannot take, a missing
dataset) and a diverged loss end with one line ``error: ...`` and exit status 1 instead of a traceback, bad input
before any training starts. ``--ckpt_path .../last.ckpt`` resumes a run,
``--ckpt_path last`` the last run in the same ``--trainer.default_root_dir``;
``--trainer.callbacks+=EMAWeightAveraging --trainer.callbacks.decay 0.9998`` validates and saves an EMA of the weights.
``fit`` ends by printing the best score, its checkpoint and the command that tests it. ``fit``, ``validate``, ``test``
and ``predict`` (class probabilities of the test images) are offered; the optimizer
and schedule are the model's (``--model.lr``, ``--model.scheduler``, ...), ``--optimizer`` is refused.
"""

from __future__ import annotations

import lightning.pytorch as pl

from lightning_nas.files import absolute, join
from lightning_nas.recipes import program
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.recipes.errors import one_line_errors
from lightning_nas.run_folder import run_directory
from lightning_nas.strategies.final_training import FinalTraining


def fit_summary(trainer: pl.Trainer, config_filename: str = "config.yaml") -> str:
    """What a finished training run says last: its best score, its checkpoint and the command that tests it."""
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "") or getattr(checkpoint, "last_model_path", "")
    if not best:
        return "no checkpoint saved (trainer.enable_checkpointing is false)"
    score = getattr(checkpoint, "best_model_score", None)
    monitor = getattr(checkpoint, "monitor", None)
    lines = [f"best {monitor}: {float(score):.4f}" if monitor and score is not None else "",
             f"checkpoint: {absolute(best)}",
             f"test it: {program(FinalTraining)} test --config {absolute(join(run_directory(trainer), config_filename))} "
             f"--ckpt_path {absolute(best)}"]
    return "\n".join(line for line in lines if line)


def main(args: list[str] | None = None) -> None:
    with one_line_errors():
        cli = run_recipe(FinalTraining, args)
        if cli.subcommand == "fit" and cli.trainer.is_global_zero:
            print(fit_summary(cli.trainer))


if __name__ == "__main__":
    main()
