"""The train recipe: published settings in its configs, genotype files, one-line errors, DDP metrics, predict, the
subcommands each recipe offers, refused optimizer options."""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import published_genotypes
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.recipes.train import main
from lightning_nas.strategies.darts import DARTS
from lightning_nas.strategies.final_training import FinalTraining

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--model.C", "4", "--model.layers", "3", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


def fit_args(tmp_path: Path, *extra: str) -> list[str]:
    config = str(ROOT / "recipes" / "train_digits.yaml")
    return ["fit", "--config", config, "--trainer.default_root_dir", str(tmp_path), *QUICK, *extra]


@pytest.mark.parametrize(
    ("config", "num_classes", "parameters", "aux_parameters"),
    [("train_cifar10.yaml", 10, 3_349_342, 476_426), ("train_imagenet.yaml", 1000, 4_718_752, 1_260_776)],
)
def test_configs_build_the_published_networks(
    config: str, num_classes: int, parameters: int, aux_parameters: int
) -> None:
    model_args = yaml.safe_load((ROOT / "recipes" / config).read_text())["model"]
    network = FinalTraining(**model_args, num_classes=num_classes, in_chans=3).network
    assert network.num_parameters() == parameters
    assert network.num_parameters(include_aux=True) - parameters == aux_parameters


def test_recipe_trains_a_genotype_file_written_by_a_search(tmp_path: Path) -> None:
    genotype = published_genotypes()["PNASNet"]
    path = genotype.save(tmp_path / "search" / "genotype.json")
    main(fit_args(tmp_path, "--model.genotype", str(path), "--trainer.limit_train_batches", "2",
                  "--trainer.limit_val_batches", "1"))
    (last,) = tmp_path.glob("**/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["genotype"] == genotype.to_dict()
    assert checkpoint["global_step"] == 2


def test_fit_ends_with_its_best_score_checkpoint_and_a_test_command_that_works_from_any_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main([*fit_args(Path("runs")), "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])
    best, checkpoint, command = capsys.readouterr().out.splitlines()[-3:]
    (saved,) = tmp_path.glob("runs/**/checkpoints/epoch=0-step=2.ckpt")
    assert re.fullmatch(r"best val/top1: 0\.\d{4}", best) and checkpoint == f"checkpoint: {saved}"
    assert command == (f"test it: python -m lightning_nas.recipes.train test --config {saved.parent / 'config.yaml'} "
                       f"--ckpt_path {saved}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main([*shlex.split(command)[5:], "--trainer.limit_test_batches", "1"])
    assert "test/top1" in capsys.readouterr().out and not any(elsewhere.iterdir())


def test_bad_genotype_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text('{"normal": [["sep_conv_3x3", 0]], "normal_concat": [2]}')
    result = subprocess.run(
        [sys.executable, "-m", "lightning_nas.recipes.train", *fit_args(tmp_path, "--model.genotype", str(path))],
        capture_output=True, text=True, cwd=ROOT, env=os.environ | {"WANDB_MODE": "offline"},
    )
    assert result.returncode == 1
    missing = "a genotype needs normal, normal_concat, reduce and reduce_concat; it lacks reduce, reduce_concat"
    assert result.stderr.splitlines()[-1] == f"error: {path}: {missing}"
    assert "Traceback" not in result.stderr


def error_line(args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    message = str(exit_info.value.code)
    assert "\n" not in message
    return message


def test_images_too_small_for_the_network_are_a_one_line_error(tmp_path: Path) -> None:
    message = error_line(fit_args(tmp_path, "--model.network", "imagenet"))
    assert message.startswith("error: NetworkImageNet expects images of shape (batch, 1, H, W) with H, W >= 32")
    assert "got (2, 1, 8, 8)" in message or "got (64, 1, 8, 8)" in message


@pytest.mark.parametrize("data", ["CIFAR10DataModule", "ImageNetDataModule"])
def test_missing_dataset_is_a_one_line_error(tmp_path: Path, data: str) -> None:
    missing = tmp_path / "nowhere"
    message = error_line(fit_args(tmp_path, "--data", f"lightning_nas.data.{data}", "--data.data_dir", str(missing)))
    assert message.startswith("error: ") and "not found" in message and str(missing) in message


@pytest.mark.parametrize(("bad", "problem"), [(["--model.cuda_graph", "true"], "cuda_graph"),
                                             (["--data.val_split", "100000"], "val_split=100000")])
def test_a_run_refused_in_setup_leaves_no_version_folder(tmp_path: Path, bad: list[str], problem: str) -> None:
    message = error_line(fit_args(tmp_path, *bad))
    assert message.startswith("error: ") and problem in message
    assert not list(tmp_path.rglob("version_*")), "the refused run left its version folder behind"


def read_val_metrics(folder: Path) -> dict[str, float]:
    (metrics,) = folder.glob("**/metrics.csv")
    rows = [row for row in csv.DictReader(metrics.open()) if row.get("val/top1")]
    return {key: float(value) for key, value in rows[-1].items() if key.startswith("val/")}


@pytest.mark.slow
def test_ddp_validation_metrics_equal_one_process(tmp_path: Path) -> None:
    """2 CPU processes (gloo) over the 297 test digits in batches of 64: 297 is not a multiple of 2 x 64, so a
    padding sampler would count one image twice (298 in all); the unpadded sync must give the 1-process numbers."""
    args = fit_args(
        tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
        "--trainer.limit_train_batches", "3", "--data.batch_size", "64",
        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "-m", "lightning_nas.recipes.train", *args],
        capture_output=True, text=True, cwd=ROOT, env=os.environ | {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = read_val_metrics(tmp_path)

    (last,) = tmp_path.glob("**/checkpoints/last.ckpt")
    model = FinalTraining.load_from_checkpoint(last, weights_only=True)
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (one,) = single.validate(model, DigitsDataModule(batch_size=64), verbose=False)

    assert set(ddp) == {"val/loss", "val/top1", "val/top5"}
    assert ddp["val/top1"] == pytest.approx(one["val/top1"], abs=1e-7)  # counts out of 297: exact
    assert ddp["val/top5"] == pytest.approx(one["val/top5"], abs=1e-7)
    assert ddp["val/loss"] == pytest.approx(one["val/loss"], rel=1e-5)


def test_predict_returns_class_probabilities_of_the_test_images(tmp_path: Path) -> None:
    main(fit_args(tmp_path, "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"))
    (last,) = tmp_path.glob("**/checkpoints/last.ckpt")
    cli = run_recipe(FinalTraining, ["predict", "--config", "train_digits", *QUICK, "--ckpt_path", str(last),
                                     "--trainer.limit_predict_batches", "2", "--trainer.logger", "false",
                                     "--trainer.default_root_dir", str(tmp_path)])
    probabilities = torch.cat(cli.trainer.predict_loop.predictions)
    assert probabilities.shape == (2 * 64, 10) and (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2 * 64))
    images = torch.stack([DigitsDataModule().make_test_set()[i][0] for i in range(64)])
    module = FinalTraining.load_from_checkpoint(last, weights_only=True).eval()
    torch.testing.assert_close(probabilities[:64], module(images).softmax(dim=1))


def test_train_offers_every_subcommand_and_a_search_only_fit_and_validate() -> None:
    train = run_recipe(FinalTraining, ["--config", "train_digits", *QUICK], run=False)
    assert list(train.subcommands()) == ["fit", "validate", "test", "predict"]
    search = run_recipe(DARTS, ["--config", "darts_digits"], run=False)
    assert list(search.subcommands()) == ["fit", "validate"]


def test_darts_test_subcommand_is_not_offered() -> None:
    with pytest.raises(ConfigError, match=r"^argument subcommand: invalid choice: 'test' \(choose from 'fit', 'validate'\)"):
        run_recipe(DARTS, ["test", "--config", "darts_digits"])


@pytest.mark.parametrize("option", ["--optimizer=Adam", "--lr_scheduler.class_path=StepLR"])
def test_optimizer_options_are_refused_in_one_line(option: str) -> None:
    with pytest.raises(SystemExit, match=rf"^error: {option.split('=')[0].split('.')[0]} is not supported: "
                                         r"FinalTraining configures its own optimizer and schedule; set them with"):
        main(["fit", "--config", "train_digits", option])
