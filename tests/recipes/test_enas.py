"""The ENAS recipe end to end on digits: its genotype file feeds the train recipe unchanged; its curves are plotted;
it picks the DDP strategy ENAS needs; bad arguments (and a space without a shared child) end in one line; the shipped
configs search the registered spaces, whose old names still work; a macro search's architecture trains in the
train recipe, as README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lightning_nas.genotypes import Genotype
from lightning_nas.recipes.enas import main
from lightning_nas.recipes.train import main as train
from lightning_nas.spaces.enas_macro import MacroArchitecture
from lightning_nas.strategies.final_training import FinalTraining

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--data.init_args.batch_size", "16", "--model.C", "4",
        "--model.lstm_size", "8", "--model.controller_steps", "2", "--model.controller_aggregate", "2",
        "--model.derive_samples", "2", "--model.compare_samples", "2", "--model.derive_batches", "2"]


def test_digits_search_writes_a_genotype_for_the_train_recipe_and_the_controller_curves(tmp_path: Path, capsys) -> None:
    cli = main(["fit", "--config", str(ROOT / "recipes" / "enas_digits.yaml"), "--trainer.default_root_dir",
                str(tmp_path), *TINY])
    printed = re.search(r"written to (\S+)", capsys.readouterr().out)
    assert printed
    genotype_file = Path(printed.group(1))
    assert genotype_file.is_relative_to(tmp_path) and Genotype.load(genotype_file) == cli.model.genotype()

    model = FinalTraining(genotype=str(genotype_file), C=4, layers=3, num_classes=10, in_chans=1)
    assert model.genotype == cli.model.genotype()
    model.eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)

    assert [row["epoch"] for row in cli.model.history] == [0]
    curves = genotype_file.parent / "plots" / "enas_curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ddp_runs_with_find_unused_parameters_without_being_asked(tmp_path: Path) -> None:
    cli = main(["--config", str(ROOT / "recipes" / "enas_digits.yaml"), "--trainer.default_root_dir", str(tmp_path),
                "--trainer.strategy", "ddp"], run=False)
    assert cli.trainer.strategy._ddp_kwargs["find_unused_parameters"] is True


@pytest.mark.parametrize("argument", ["num_nodes", "controller_steps", "controller_aggregate", "C", "derive_samples"])
def test_bad_counts_end_with_one_line_while_parsing(tmp_path: Path, argument: str) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(ROOT / "recipes" / "enas_digits.yaml"), "--trainer.default_root_dir",
              str(tmp_path), f"--model.{argument}", "0"])
    assert exit.value.code == f"error: --model.{argument} must be greater than 0, got 0"
    assert not any(tmp_path.iterdir())


def test_fashion_mnist_config_builds_the_reduced_search(tmp_path: Path) -> None:
    cli = main(["--config", str(ROOT / "recipes" / "enas_fmnist.yaml"), "--trainer.default_root_dir", str(tmp_path)],
               run=False)
    assert cli.model.hparams.C == 16 and cli.model.hparams.in_chans == 1 and cli.trainer.limit_train_batches == 30
    assert cli.model.search_space.name == "enas_micro"


@pytest.mark.parametrize("config, space", [("enas_micro_cifar10", "enas_micro"), ("enas_macro_cifar10", "enas_macro")])
def test_the_authors_configs_search_their_registered_spaces_and_the_old_names_still_work(
        tmp_path: Path, config: str, space: str) -> None:
    arguments = ["--config", str(ROOT / "recipes" / f"{config}.yaml"), "--trainer.default_root_dir", str(tmp_path),
                 "--model.C", "4", "--model.lstm_size", "8"]
    assert main(arguments, run=False).model.search_space.name == space
    old_name = space.removeprefix("enas_")
    assert main([*arguments, "--model.space", old_name], run=False).model.search_space.name == space


def test_a_space_without_a_shared_child_ends_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(ROOT / "recipes" / "enas_digits.yaml"), "--trainer.default_root_dir",
              str(tmp_path), "--model.space", "pnas"])
    assert str(exit.value.code).startswith("error: the pnas space has no shared child, which ENAS and RSPS train")
    assert "\n" not in str(exit.value.code) and not any(tmp_path.iterdir())


def test_nb201_fashion_mnist_config_builds_the_supernet_search(tmp_path: Path) -> None:
    cli = main(["--config", str(ROOT / "recipes" / "enas_nb201_fmnist.yaml"), "--trainer.default_root_dir",
                str(tmp_path)], run=False)
    assert cli.model.search_space.name == "nb201" and cli.model.hparams.C == 8 and cli.model.hparams.in_chans == 1
    assert cli.datamodule.mode == "search" and cli.datamodule.val_split == 2000


def test_validate_scores_the_derived_architecture_of_a_search_checkpoint(tmp_path: Path, capsys) -> None:
    config = ["--config", str(ROOT / "recipes" / "enas_digits.yaml"), "--trainer.default_root_dir", str(tmp_path)]
    search = main(["fit", *config, *TINY])
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    scores = [main(["validate", *config, *TINY, "--trainer.limit_val_batches", "3", "--ckpt_path", str(checkpoint)])
              .trainer.callback_metrics["val/top1"] for _ in range(2)]
    assert 0 <= float(scores[0]) <= 1 and scores[0] == scores[1]  # a function of the checkpoint alone
    restored = main(["validate", *config, *TINY, "--trainer.limit_val_batches", "1", "--ckpt_path", str(checkpoint)])
    assert restored.model.genotype() == search.model.genotype()
    with pytest.raises(SystemExit) as exit:
        main(["validate", *config, *TINY, "--trainer.limit_val_batches", "1"])
    assert exit.value.code == ("error: ENAS validation scores the architecture a search derived, and none is derived "
                               "yet: give a search checkpoint with --ckpt_path (e.g. last)")


def test_a_macro_search_writes_a_macro_architecture_the_train_recipe_trains(tmp_path: Path, capsys) -> None:
    """README's "Retrain an ENAS macro architecture": the search's genotype.json through the train recipe."""
    cli = main(["fit", "--config", str(ROOT / "recipes" / "enas_digits.yaml"), "--trainer.default_root_dir",
                str(tmp_path / "search"), *TINY, "--model.space", "enas_macro", "--model.num_layers", "3"])
    genotype_file = Path(re.search(r"written to (\S+)", capsys.readouterr().out).group(1))
    arch = MacroArchitecture.load(genotype_file)
    assert arch == cli.model.genotype() and arch.num_layers == 3
    train(["fit", "--config", str(ROOT / "recipes" / "train_digits.yaml"), "--trainer.default_root_dir",
           str(tmp_path / "train"), "--model.space", "enas_macro", "--model.genotype", str(genotype_file),
           "--model.C", "4", "--model.auxiliary_weight", "0", "--model.drop_path_prob", "0", "--trainer.max_epochs",
           "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    checkpoint = torch.load(next((tmp_path / "train").glob("**/last.ckpt")), weights_only=True)
    assert checkpoint["global_step"] == 2 and checkpoint["hyper_parameters"]["genotype"] == arch.to_dict()
