"""Bad input ends a recipe with one line ``error: ...`` (exit status 1) before any data is loaded or any training
starts; a diverged run ends the same way without leaving non-finite state behind. One test per row of issue 14."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from lightning_nas.recipes import pnas, train

ROOT = Path(__file__).resolve().parents[2]


def exit_line(main: Callable[[list[str]], object], args: list[str]) -> str:
    """The one line a recipe exits with; ``sys.exit`` with a message exits with status 1."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message  # a str code: printed to stderr, exit status 1
    return message


def train_args(root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / "recipes" / "train_digits.yaml"), "--trainer.default_root_dir", str(root),
            "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
            "--model.C", "4", "--model.layers", "3", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.C", "0"], "C (channels of the first cells) must be at least 1, got 0; DARTS uses 36 on CIFAR-10"),
        (["--model.C", "-8"], "C (channels of the first cells) must be at least 1, got -8; DARTS uses 36 on CIFAR-10"),
        (["--model.network", "imagenet", "--model.C", "5"],
         "the imagenet network halves C in its stem: C must be even, got 5; try 6"),
        (["--model.layers", "0"], "layers (cells stacked) must be at least 1, got 0; DARTS stacks 20 on CIFAR-10"),
        (["--model.drop_path_prob", "3"], "drop_path_prob must be in [0, 1), got 3.0; DARTS uses 0.2"),
        (["--model.drop_path_prob", "1"], "drop_path_prob must be in [0, 1), got 1.0; DARTS uses 0.2"),
        (["--model.lr", "0"], "lr must be positive, got 0.0; DARTS uses 0.025"),
    ],
)
def test_train_arguments_fail_before_any_work(tmp_path: Path, extra: list[str], message: str) -> None:
    assert exit_line(train.main, train_args(tmp_path, *extra)) == f"error: {message}"
    assert not any(tmp_path.iterdir())  # no run folder: nothing started


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "a genotype must be an object with normal, normal_concat, reduce and reduce_concat; got 5 (int)"),
        ("null", "a genotype must be an object with normal, normal_concat, reduce and reduce_concat; got null"),
        ('{"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1.7]], "normal_concat": [2], '
         '"reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}',
         "normal[1] input 1.7 is not a whole number; write node indices as integers (0 = c_{k-2}, 1 = c_{k-1}, "
         "2.. = the cell's nodes)"),
    ],
)
def test_bad_genotype_files_fail_before_any_work(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "genotype.json"
    path.write_text(text)
    root = tmp_path / "runs"
    assert exit_line(train.main, train_args(root, "--model.genotype", str(path))) == f"error: {path}: {message}"
    assert not root.exists()


def test_a_directory_given_as_genotype_file_names_the_file_inside(tmp_path: Path) -> None:
    search = tmp_path / "search"
    search.mkdir()
    message = exit_line(train.main, train_args(tmp_path / "runs", "--model.genotype", str(search)))
    example = str(search / "genotype.json")
    assert message == f"error: genotype file {str(search)!r} is a directory; give a file in it, e.g. {example!r}"


def test_a_diverged_final_training_exits_naming_epoch_step_and_phase(tmp_path: Path) -> None:
    """lr 10^4 without gradient clipping: the validation after the first 3 steps sees a NaN loss; no checkpoint."""
    args = train_args(tmp_path, "--model.lr", "1e4", "--trainer.gradient_clip_val", "null", "--trainer.max_epochs", "3",
                      "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2")
    message = exit_line(train.main, args)
    assert message == ("error: val/loss is nan in epoch 0, step 3 (validation); lower the learning rate or set "
                       "trainer.gradient_clip_val")
    assert not list(tmp_path.glob("**/*.ckpt"))


def pnas_args(root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / "recipes" / "pnas_digits.yaml"), "--output_dir", str(root / "pnas"), *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--K", "0"], "K (beam: candidates trained per level) must be at least 1, got 0; the paper keeps K=256"),
        (["--B", "0"], "B (blocks per cell, one level each) must be at least 1, got 0; the paper searches B=5"),
        (["--epochs", "0"], "epochs (per candidate) must be at least 1, got 0; the paper trains each for 20"),
        (["--ops", "[]"], "ops is empty: give the candidate ops, e.g. ['sep_conv_3x3', 'sep_conv_5x5', "
                          "'sep_conv_7x7', 'conv_7x1_1x7', 'identity', 'avg_pool_3x3', 'max_pool_3x3', "
                          "'dilated_conv_3x3']"),
        (["--ops", "[identity, conv_9x9]"], "unknown ops ['conv_9x9'] in ops; valid ops are: "),
        (["--ensemble_size", "100"], "ensemble_size (predictors, one held-out fold each) must be between 1 and the "
                                     "36 one-block cells the predictor first learns from, got 100; the paper uses 5"),
        (["--data.val_split", "0"], "PNAS scores candidates on held-out images: give the data module mode='eval' and "
                                    "val_split > 0, got mode='eval', val_split=0"),
    ],
)
def test_pnas_arguments_fail_before_any_work(tmp_path: Path, extra: list[str], message: str) -> None:
    assert exit_line(pnas.main, pnas_args(tmp_path, *extra)).startswith(f"error: {message}")
    assert not (tmp_path / "pnas").exists()
