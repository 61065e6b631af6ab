"""The ENAS recipe end to end on digits: its genotype file feeds the train recipe unchanged; its curves are plotted;
it picks the DDP strategy ENAS needs; bad arguments end in one line; README's macro training runs."""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.data import DigitsDataModule
from lightning_nas.genotypes import Genotype
from lightning_nas.recipes.enas import main
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


def test_readme_macro_training_trains_a_macro_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Retrain an ENAS macro architecture", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {"__name__": "macro_training"}
    exec(compile(code, "README.md", "exec"), namespace)
    path = MacroArchitecture.uniform(6, torch.Generator().manual_seed(0)).save(tmp_path / "genotype.json")
    model = namespace["MacroTraining"](path, in_chans=1, C=4)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(model, DigitsDataModule(batch_size=16))
    assert trainer.global_step == 2 and "val/top1" in trainer.callback_metrics
