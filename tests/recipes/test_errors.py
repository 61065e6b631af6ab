"""Bad input ends a recipe with one line ``error: ...`` (exit status 1) before any data is loaded or any training
starts; a diverged run ends the same way without leaving non-finite state behind. One test per row of issues 14 and
37: values out of range refused while parsing, parser errors in one line, unreadable inputs named."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Callable

import pytest
import torch

from lightning_nas.checkpoint_io import AtomicCheckpointIO
from lightning_nas.recipes import darts, enas, pnas, train
from lightning_nas.spaces.enas_macro import MacroArchitecture
from lightning_nas.strategies.darts import DARTS
from lightning_nas.strategies.final_training import FinalTraining

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
        (["--model.C", "0"], "--model.C must be greater than 0, got 0"),
        (["--model.C", "-8"], "--model.C must be greater than 0, got -8"),
        (["--model.network", "imagenet", "--model.C", "5"],
         "the imagenet network halves C in its stem: C must be even, got 5; try 6"),
        (["--model.layers", "0"], "--model.layers must be greater than 0, got 0"),
        (["--model.drop_path_prob", "3"], "--model.drop_path_prob must be less than 1, got 3"),
        (["--model.drop_path_prob", "1"], "--model.drop_path_prob must be less than 1, got 1"),
        (["--model.lr", "0"], "--model.lr must be greater than 0, got 0"),
        (["--model.gamma", "0"], "--model.gamma must be greater than 0, got 0"),
        (["--data.batch_size", "0"], "--data.batch_size must be greater than 0, got 0"),
        (["--data.batch_size", "-5"], "--data.batch_size must be greater than 0, got -5"),
        (["--data.num_workers", "-1"], "--data.num_workers must be greater than or equal to 0, got -1"),
        (["--model.lr", "abc"], "--model.lr must be a valid number, got abc"),
        (["--model.network", "cifar10"], "--model.network must be one of 'cifar', 'imagenet', got 'cifar10'"),
        (["--trainer.max_epochs", "x"], "--trainer.max_epochs must be an int or null, got 'x'"),
        (["--model.nosuch", "1"],
         "unknown option --model.nosuch; `python -m lightning_nas.recipes.train fit --help` lists the options"),
        (["--model.lrr", "0.1"], "unknown option --model.lrr (did you mean --model.lr?); "
                                 "`python -m lightning_nas.recipes.train fit --help` lists the options"),
    ],
)
def test_train_arguments_fail_before_any_work(tmp_path: Path, extra: list[str], message: str) -> None:
    assert exit_line(train.main, train_args(tmp_path, *extra)) == f"error: {message}"
    assert not any(tmp_path.iterdir())  # no run folder: nothing started


def test_an_unknown_data_module_lists_the_known_ones(tmp_path: Path) -> None:
    message = exit_line(train.main, train_args(tmp_path, "--data", "NoSuchDataModule"))
    known = message.removeprefix("error: --data: no class named 'NoSuchDataModule'; known: ").split(", ")
    assert {"CIFAR10DataModule", "DigitsDataModule", "FashionMNISTDataModule", "ImageNetDataModule"} <= set(known)
    assert not any(tmp_path.iterdir())


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


def test_a_binary_genotype_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_bytes(b"\x80\x04\x95binary")
    assert exit_line(train.main, train_args(tmp_path / "runs", "--model.genotype", str(path))) == (
        f"error: genotype file {str(path)!r} is not text (byte 0x80 at position 0); give the genotype.json a search "
        "wrote")


def test_an_enas_macro_architecture_given_to_the_train_recipe_says_where_to_train_it(tmp_path: Path) -> None:
    path = MacroArchitecture.uniform(4, torch.Generator().manual_seed(0)).save(tmp_path / "genotype.json")
    assert exit_line(train.main, train_args(tmp_path / "runs", "--model.genotype", path)) == (
        f"error: {path}: this is an ENAS macro architecture (ops and skips of a whole network), not a cell genotype; "
        "README's 'Retrain an ENAS macro architecture' says how to train it")


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
        (["--epochs", "0"], "epochs (per candidate) must be at least 1, got 0"),
        (["--ops", "[]"], "ops is empty: give the candidate ops, e.g. ['sep_conv_3x3', 'sep_conv_5x5', "
                          "'sep_conv_7x7', 'conv_7x1_1x7', 'identity', 'avg_pool_3x3', 'max_pool_3x3', "
                          "'dilated_conv_3x3']"),
        (["--ops", "[identity, conv_9x9]"], "unknown ops ['conv_9x9'] in ops; valid ops are: "),
        (["--space", "nb201"], "the nb201 space has no progressive growth, which PNAS searches level by level; "
                               "spaces that have one: "),
        (["--ensemble_size", "100"], "ensemble_size (predictors, one held-out fold each) must be between 1 and the "
                                     "36 one-block cells the predictor first learns from, got 100; the paper uses 5"),
        (["--data.val_split", "0"], "PNAS scores candidates on held-out images: give the data module mode='eval' and "
                                    "val_split > 0, got mode='eval', val_split=0"),
    ],
)
def test_pnas_arguments_fail_before_any_work(tmp_path: Path, extra: list[str], message: str) -> None:
    assert exit_line(pnas.main, pnas_args(tmp_path, *extra)).startswith(f"error: {message}")
    assert not (tmp_path / "pnas").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.arch_lr", "-1"], "--model.arch_lr must be greater than 0, got -1"),
        (["--model.C", "0"], "--model.C must be greater than 0, got 0"),
        (["--model.arch_betas", "[0.5, 1.5]"], "--model.arch_betas must be less than 1, got 1.5"),
        (["--model.num_threads", "0"], "--model.num_threads must be greater than 0, got 0"),
        (["--model.virtual_step", "x"], "--model.virtual_step must be one of 'official', 'paper', got 'x'"),
        (["--data.val_split", "-1"], "--data.val_split must be greater than or equal to 0, got -1"),
    ],
)
def test_darts_arguments_fail_while_parsing(tmp_path: Path, extra: list[str], message: str) -> None:
    args = ["fit", "--config", "darts_digits", "--trainer.default_root_dir", str(tmp_path), *extra]
    assert exit_line(darts.main, args) == f"error: {message}"
    assert not any(tmp_path.iterdir())


def test_enas_arguments_fail_while_parsing(tmp_path: Path) -> None:
    args = ["fit", "--config", "enas_digits", "--trainer.default_root_dir", str(tmp_path), "--model.C", "-1"]
    assert exit_line(enas.main, args) == "error: --model.C must be greater than 0, got -1"
    assert not any(tmp_path.iterdir())


def test_a_subcommand_the_strategy_lacks_is_named_with_the_ones_it_has(tmp_path: Path) -> None:
    assert exit_line(darts.main, ["test", "--config", "darts_digits"]) == (
        "error: argument subcommand: invalid choice: 'test' (choose from 'fit', 'validate'); "
        "`python -m lightning_nas.recipes.darts --help` lists the options")
    assert exit_line(darts.main, ["fitt", "--config", "darts_digits"]) == (
        "error: argument subcommand: invalid choice: 'fitt' (choose from 'fit', 'validate'); "
        "`python -m lightning_nas.recipes.darts --help` lists the options")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"model: [1\n  C: 4", "expected ',' or ']', but got ':' at line 2, column 4); fix it or give another"),
        (b"\x80\x04\x95binary", "not text: byte 0x80 at position 0); give a YAML file"),
    ],
)
def test_a_config_file_that_is_no_yaml_is_named(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    message = f"error: --config {path} is not a YAML file ({reason}"
    assert exit_line(train.main, ["fit", "--config", str(path)]) == message


def test_usage_comes_only_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    exit_line(train.main, ["fit", "--config", "train_digits", "--model.nosuch", "1"])
    assert "usage" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m lightning_nas.recipes.train [options] fit")


def saved_checkpoint(path: Path, module: torch.nn.Module) -> Path:
    """A checkpoint with ``module``'s hyperparameters and weights, as a run of its recipe saves them."""
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def test_a_checkpoint_of_another_strategy_names_it_and_its_recipe(tmp_path: Path) -> None:
    search = saved_checkpoint(tmp_path / "search.ckpt", DARTS(C=2, layers=3))
    assert exit_line(train.main, train_args(tmp_path / "runs", "--ckpt_path", str(search))) == (
        f"error: --ckpt_path {search} is a checkpoint of DARTS, not FinalTraining: use it with "
        "python -m lightning_nas.recipes.darts")
    assert not (tmp_path / "runs").exists()


def test_a_ckpt_path_that_is_no_checkpoint_is_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    whole = saved_checkpoint(tmp_path / "whole.ckpt", FinalTraining(C=4, layers=3)).read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole[: len(whole) // 2])
    for path in (text, truncated):
        message = exit_line(train.main, train_args(tmp_path / "runs", "--ckpt_path", str(path)))
        assert message.startswith(f"error: --ckpt_path {path} is no checkpoint torch can read: truncated, or not "
                                  "written by torch.save (")
        assert message.endswith("); give a .ckpt file that a run saved")
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(whole)
    assert exit_line(train.main, train_args(tmp_path / "runs", "--ckpt_path", str(tmp_path / "run"))) == (
        f"error: --ckpt_path {tmp_path / 'run'} is a directory; give a checkpoint file, e.g. {folder / 'last.ckpt'}")
    assert not (tmp_path / "runs").exists()


def test_ckpt_path_last_with_nothing_to_resume_says_so_and_starts_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train.main(train_args(tmp_path, "--ckpt_path", "last", "--trainer.limit_train_batches", "1",
                          "--trainer.limit_val_batches", "1"))
    out = capsys.readouterr().out
    assert f"--ckpt_path last: no last.ckpt under {tmp_path} to resume, so this run starts from scratch\n" in out
    assert list(tmp_path.glob("**/last.ckpt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_one_line(tmp_path: Path) -> None:
    assert exit_line(train.main, train_args(tmp_path, "--trainer.accelerator", "gpu")) == (
        "error: Lightning refuses the trainer settings (accelerator='gpu', devices=1, strategy='auto'): No supported "
        "gpu backend found!; --trainer.accelerator auto uses what this machine has")


def test_a_root_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """/sys refuses new folders even to root, as a read-only folder refuses them to a user."""
    args = [*train_args(tmp_path, "--trainer.logger", "true"), "--trainer.default_root_dir", "/sys/lightning_nas_runs"]
    message = exit_line(train.main, args)  # "Operation not permitted" for root, "Permission denied" for a user
    assert message.startswith("error: cannot create the run folder /sys/lightning_nas_runs: ")
    assert message.endswith("; give --trainer.default_root_dir a folder this user can write to")


def test_a_remote_checkpoint_is_loaded_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning would unpickle an http(s) checkpoint in full unless told otherwise."""
    loads = []

    def load_checkpoint(self: object, path: str, map_location: object = None, weights_only: bool | None = None) -> None:
        loads.append((path, weights_only))
        raise FileNotFoundError(f"{path}: not fetched in a test")

    monkeypatch.setattr(AtomicCheckpointIO, "load_checkpoint", load_checkpoint)
    url = "https://example.com/runs/last.ckpt"
    assert exit_line(train.main, train_args(tmp_path, "--ckpt_path", url)) == f"error: {url}: not fetched in a test"
    assert loads == [(url, True)]


def test_a_full_disk_ends_in_one_line_that_says_how_to_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saves = []

    def save_checkpoint(self: object, checkpoint: dict, path: str, storage_options: object = None) -> None:
        saves.append(path)
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save_checkpoint)
    message = exit_line(train.main, train_args(tmp_path, "--trainer.limit_train_batches", "1",
                                               "--trainer.limit_val_batches", "1"))
    assert message == (f"error: No space left on device writing {saves[0]}; free space there, or give "
                       "--trainer.default_root_dir a folder on another disk and resume from the last checkpoint")
