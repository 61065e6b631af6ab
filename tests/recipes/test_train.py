"""The train recipe: published settings in its configs, genotype files, one-line errors, DDP metrics, predict, the
subcommands each recipe offers, refused optimizer options, and any registered space's architecture (NB201 cells,
ENAS macro networks) trained in the network its space builds."""

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
from lightning_nas.networks.nb201 import NB201Network
from lightning_nas.recipes import darts
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.recipes.train import main
from lightning_nas.spaces import SPACES, create_space
from lightning_nas.spaces.enas_macro import MacroArchitecture, MacroNetwork
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


# --- any registered space: the network its space builds --------------------------------------------------------------

NB201_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NO_AUX = ["--model.auxiliary_weight", "0", "--model.drop_path_prob", "0"]
FEW_BATCHES = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]


def trained(tmp_path: Path) -> FinalTraining:
    (last,) = tmp_path.glob("**/checkpoints/last.ckpt")
    return FinalTraining.load_from_checkpoint(last, weights_only=True)


def test_recipe_trains_an_nb201_cell_in_the_network_its_space_builds(tmp_path: Path) -> None:
    """QUICK's C=4, layers=3: NB201's network of 3 stages of layers // 3 = 1 cell, 4, 8 and 16 channels."""
    main(fit_args(tmp_path, "--model.space", "nb201", "--model.genotype", NB201_CELL, *NO_AUX, *FEW_BATCHES))
    (last,) = tmp_path.glob("**/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 3
    assert checkpoint["hyper_parameters"]["space"] == "nb201"
    assert checkpoint["hyper_parameters"]["genotype"] == {"arch": NB201_CELL}

    model = trained(tmp_path)
    space = create_space("nb201")
    arch = space.from_string(NB201_CELL)
    assert isinstance(model.network, NB201Network) and model.genotype == arch
    parameters = sum(p.numel() for p in model.network.parameters())
    assert parameters == space.num_params(arch, 10, 1, C=4, N=1) == 14_062
    built = space.build(arch, 10, 1, C=4, N=1)
    assert [(k, v.shape) for k, v in built.state_dict().items()] == [
        (k, v.shape) for k, v in model.network.state_dict().items()]


def test_nb201_layers_are_three_stages_of_layers_over_three_cells() -> None:
    space = create_space("nb201")
    arch = space.from_string(NB201_CELL)
    model = FinalTraining(NB201_CELL, space="nb201", C=16, layers=15, num_classes=10, in_chans=3,
                          auxiliary_weight=0, drop_path_prob=0)
    assert sum(p.numel() for p in model.network.parameters()) == space.num_params(arch, 10, 3, C=16, N=5)
    every_conv = FinalTraining("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                               "nor_conv_3x3~2|", space="nb201", C=16, layers=15, auxiliary_weight=0, drop_path_prob=0)
    assert sum(p.numel() for p in every_conv.network.parameters()) == 1_531_546  # the benchmark paper's 1.53 M


def test_recipe_trains_the_genotype_json_an_nb201_search_wrote(tmp_path: Path) -> None:
    darts.main(["fit", "--config", "darts_digits", "--model.space", "nb201", "--model.C", "4", "--model.layers", "3",
                "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--trainer.default_root_dir", str(tmp_path / "search")])
    (genotype,) = (tmp_path / "search").glob("**/genotype.json")
    found = create_space("nb201").from_json(genotype.read_text())

    main(fit_args(tmp_path / "train", "--model.space", "nb201", "--model.genotype", str(genotype), *NO_AUX,
                  *FEW_BATCHES))
    model = trained(tmp_path / "train")
    assert model.genotype == found and model.hparams["genotype"] == {"arch": found.to_string()}
    assert torch.load(next((tmp_path / "train").glob("**/last.ckpt")), weights_only=True)["global_step"] == 3


def test_recipe_trains_an_enas_macro_architecture(tmp_path: Path) -> None:
    """The README's retraining of a macro search's genotype.json, through the recipe; its depth is the
    architecture's (6 layers here), whatever ``layers`` says."""
    arch = MacroArchitecture.uniform(6, torch.Generator().manual_seed(0))
    path = arch.save(tmp_path / "search" / "genotype.json")
    main(fit_args(tmp_path / "train", "--model.space", "enas_macro", "--model.genotype", str(path), *NO_AUX,
                  *FEW_BATCHES))
    checkpoint = torch.load(next((tmp_path / "train").glob("**/last.ckpt")), weights_only=True)
    assert checkpoint["global_step"] == 3 and checkpoint["hyper_parameters"]["genotype"] == arch.to_dict()
    model = trained(tmp_path / "train")
    assert isinstance(model.network, MacroNetwork) and model.network.arch == arch
    assert (sum(p.numel() for p in model.network.parameters())
            == create_space("enas_macro").num_params(arch, 10, 1, C=4)
            == sum(p.numel() for p in MacroNetwork(arch, C=4, num_classes=10, in_chans=1).parameters()))


@pytest.mark.parametrize(("config", "genotype", "in_chans", "network", "parameters"), [
    ("train_nb201_fmnist.yaml", None, 1, NB201Network, 473_082),
    ("train_enas_macro_cifar10.yaml", "macro", 3, MacroNetwork, None),
])
def test_shipped_configs_of_other_spaces_build_their_networks(
    tmp_path: Path, config: str, genotype: str | None, in_chans: int, network: type, parameters: int | None
) -> None:
    model_args = yaml.safe_load((ROOT / "recipes" / config).read_text())["model"]
    space = create_space(model_args["space"])
    if genotype == "macro":
        arch = MacroArchitecture.uniform(12, torch.Generator().manual_seed(0))
        model_args["genotype"] = str(arch.save(tmp_path / "genotype.json"))
    else:
        arch = space.from_string(model_args["genotype"])
    model = FinalTraining(**model_args, num_classes=10, in_chans=in_chans)
    assert isinstance(model.network, network)
    count = sum(p.numel() for p in model.network.parameters())
    assert count == space.num_params(arch, 10, in_chans, **space.sized(model_args["C"], model_args["layers"] // 3))
    if parameters is not None:
        assert count == parameters  # the config's comment: 0.47M


@pytest.mark.parametrize(("extra", "message"), [
    (["--model.space", "nb201", "--model.genotype", "|nor_conv_3x3~0|+|nor_conv_3x3~1|", *NO_AUX],
     "error: genotype '|nor_conv_3x3~0|+|nor_conv_3x3~1|' is neither a file nor an architecture of the nb201 space: "
     "NAS-Bench-201 cell '|nor_conv_3x3~0|+|nor_conv_3x3~1|': expected 3 nodes joined by '+', got 2"),
    (["--model.space", "nb202", "--model.genotype", NB201_CELL, *NO_AUX],
     f"error: unknown search space 'nb202'; registered spaces: {', '.join(sorted(SPACES))}, or a space of your own by "
     "its import path, package.module:Name"),
    (["--model.space", "nb201", *NO_AUX],
     "error: genotype 'DARTS_V2' is a published DARTS-style cell, not an architecture of the nb201 space: give the "
     "nb201 space's text form or the genotype.json its search wrote"),
    (["--model.space", "nb201", "--model.genotype", NB201_CELL],
     "error: the nb201 space's network (NB201Network) has no auxiliary head and no drop path: set auxiliary_weight=0 "
     "and drop_path_prob=0"),
    (["--model.space", "enas_macro", "--model.genotype", "runs/nowhere/genotype.json", *NO_AUX],
     "error: genotype file 'runs/nowhere/genotype.json' does not exist"),
    (["--model.space", "nb201", "--model.genotype", NB201_CELL, "--model.network", "imagenet", *NO_AUX],
     "error: network='imagenet' stacks DARTS-style cells; the nb201 space builds its own network: leave network at "
     "'cifar'"),
])
def test_bad_architecture_or_space_is_one_line_before_training(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    assert error_line(fit_args(tmp_path, *extra)) == message
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("version_*"))


def test_unparsable_architecture_ends_the_program_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lightning_nas.recipes.train",
         *fit_args(tmp_path, "--model.space", "nb201", "--model.genotype", "|conv_9x9~0|+|...|", *NO_AUX)],
        capture_output=True, text=True, cwd=ROOT, env=os.environ | {"WANDB_MODE": "offline"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "error: genotype '|conv_9x9~0|+|...|' is neither a file nor an architecture of the nb201 space: ")
