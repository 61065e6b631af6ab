"""The shared recipe CLI: each run keeps its own resolved config next to its checkpoints; shipped recipe configs are
found by name; ``--ckpt_path last`` resumes the last run of the root dir, in its folder."""

import csv
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_nas.checkpoint_io import AtomicCheckpointIO
from lightning_nas.errors import ConfigError
from lightning_nas.recipes import config_names, config_path, shipped_configs
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.recipes.resume import last_checkpoint
from lightning_nas.recipes.train import main
from lightning_nas.run_folder import lock_folder
from lightning_nas.strategies.final_training import FinalTraining

ROOT = Path(__file__).resolve().parents[2]


def test_every_run_stores_its_own_resolved_config(tmp_path: Path) -> None:
    for lr in ("0.01", "0.02"):  # two runs in one root folder, as a sweep's runs share one
        main(["fit", "--config", str(ROOT / "recipes" / "train_digits.yaml"), "--trainer.default_root_dir",
              str(tmp_path), "--model.C", "4", "--model.layers", "3", "--model.lr", lr, "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false"])
    configs = sorted(tmp_path.glob("**/checkpoints/config.yaml"))
    assert len(configs) == 2 and configs[0].parent != configs[1].parent
    saved = [yaml.safe_load(path.read_text()) for path in configs]
    assert sorted(config["model"]["lr"] for config in saved) == [0.01, 0.02]
    assert all(config["data"]["class_path"] == "lightning_nas.data.DigitsDataModule" for config in saved)


def test_recipes_save_checkpoints_atomically_unless_told_otherwise() -> None:
    args = ["--config", str(ROOT / "recipes" / "train_digits.yaml"), "--model.C", "4", "--model.layers", "3"]
    cli = run_recipe(FinalTraining, args, run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    custom = run_recipe(FinalTraining, [*args, "--trainer.plugins", "lightning.pytorch.plugins.io.TorchCheckpointIO"],
                        run=False)
    assert type(custom.trainer.strategy.checkpoint_io) is TorchCheckpointIO


def test_shipped_recipe_configs_are_found_by_name() -> None:
    recipes = ROOT / "recipes"
    shipped = sorted(path.relative_to(recipes).with_suffix("").as_posix() for path in recipes.glob("**/*.yaml"))
    assert config_names() == shipped  # every config of recipes/, those of its subfolders as folder/name
    for name in shipped:
        assert config_path(name).read_text() == (recipes / f"{name}.yaml").read_text()
    assert config_path("sweeps/train.yaml") == config_path("sweeps/train")
    with pytest.raises(ConfigError) as unknown:
        config_path("darts_digit")
    assert str(unknown.value) == f"no recipe config named 'darts_digit'; the package ships {', '.join(shipped)}"


def test_config_option_takes_a_shipped_recipe_name(tmp_path: Path) -> None:
    assert shipped_configs(["fit", "--config", "train_digits", "--config=pnas_digits", "--model.C", "4"]) == [
        "fit", "--config", str(config_path("train_digits")), f"--config={config_path('pnas_digits')}", "--model.C", "4"]
    inline = "{trainer: {max_epochs: 2}}"
    assert shipped_configs(["--config", inline, "--config", str(tmp_path)]) == ["--config", inline, "--config",
                                                                                str(tmp_path)]
    cli = run_recipe(FinalTraining, ["--config", "train_digits", "--model.C", "4", "--model.layers", "3"], run=False)
    assert cli.config["model"]["genotype"] == "DARTS_V2" and cli.trainer.max_epochs == 6


def test_a_command_line_run_parses_sys_argv_without_lightnings_args_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--config", "train_digits", "--model.C", "4", "--model.layers", "3"]
    monkeypatch.setattr(sys, "argv", ["lightning_nas.recipes.train", *args])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = run_recipe(FinalTraining, run=False)
    assert cli.config["model"]["C"] == 4 and cli.config["model"]["layers"] == 3
    assert not [w for w in caught if "args parameter" in str(w.message)]


def test_unknown_config_name_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"^error: no recipe config named 'train_digit'; the package ships"):
        main(["fit", "--config", "train_digit"])


def test_ckpt_path_last_resumes_the_last_run_of_the_root_dir(tmp_path: Path) -> None:
    def fit(epochs: int, *extra: str) -> pl.Trainer:
        return run_recipe(FinalTraining, ["fit", "--config", "train_digits", "--trainer.default_root_dir",
                                          str(tmp_path), "--model.C", "4", "--model.layers", "3",
                                          "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "2",
                                          "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar",
                                          "false", *extra]).trainer

    fit(1)
    (last,) = tmp_path.glob("**/last.ckpt")
    written = last.stat().st_mtime_ns
    holder = lock_folder(str(last.parent.parent), "held", "by this test")  # another resume of the run, running
    with pytest.raises(ConfigError, match=r"another run is resuming \S+last.ckpt in \S+version_0 \(it holds"):
        fit(2, "--ckpt_path", "last")
    holder.close()
    assert last.stat().st_mtime_ns == written
    resumed = fit(2, "--ckpt_path", "last")  # Lightning alone looks in the new run's empty folder and starts over
    assert resumed.ckpt_path == str(last) and resumed.global_step == 4
    assert last_checkpoint(tmp_path) == str(last) and last.stat().st_mtime_ns > written  # continued in its folder
    with open(last.parent.parent / "metrics.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file) if row["val/top1"]] == ["0", "1"]  # both runs' rows


def test_every_file_of_a_run_goes_through_fsspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search under ``memory://`` writes its checkpoints, genotype, history, heat maps and config there, nothing
    locally, and ``--ckpt_path last`` finds its last checkpoint there."""
    import fsspec

    from lightning_nas.recipes import darts

    monkeypatch.chdir(tmp_path)
    memory = fsspec.filesystem("memory")
    args = ["--config", str(ROOT / "recipes" / "darts_digits.yaml"), "--trainer.default_root_dir", "memory://runs/s",
            "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "memory://runs/s",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar",
            "false", "--model.C", "4", "--model.layers", "3", "--model.arch_warmup_epochs", "0"]
    try:
        darts.main(["fit", *args, "--trainer.max_epochs", "1"])
        folder = "/runs/s/lightning_logs/version_0/checkpoints"
        assert {name.rsplit("/", 1)[1] for name in memory.find(folder)} >= {
            "last.ckpt", "genotype.json", "genotype_history.jsonl", "config.yaml", "alpha_epoch000.png"}
        assert yaml.safe_load(memory.cat(f"{folder}/config.yaml"))["model"]["C"] == 4
        assert last_checkpoint("memory://runs/s") == f"memory://{folder}/last.ckpt"
        darts.main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
        history = memory.cat(f"{folder}/genotype_history.jsonl").decode()  # the resumed run continues in its folder
        records = [yaml.safe_load(line) for line in history.splitlines()]  # resumed after epoch 0, history whole
        assert [(record["epoch"], record["run"]) for record in records] == [(0, "version_0"), (1, "version_0")]
        assert not memory.exists("/runs/s/lightning_logs/version_1")
    finally:
        memory.rm("/runs", recursive=True)
    assert list(tmp_path.iterdir()) == []  # no local folder named memory: or runs


def test_runs_without_a_logger_cannot_share_their_root(tmp_path: Path) -> None:
    args = ["--config", str(ROOT / "recipes" / "train_digits.yaml"), "--model.C", "4", "--model.layers", "3",
            "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    first = run_recipe(FinalTraining, args, run=False)
    with pytest.raises(ConfigError, match=f"^another run without a logger is writing to {tmp_path} "):
        run_recipe(FinalTraining, args, run=False)
    first.run_lock.close()  # the first run ends
    run_recipe(FinalTraining, args, run=False).run_lock.close()


def test_the_run_config_goes_to_wandb_under_a_name_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    from lightning_nas.recipes.cli import WANDB_CONFIG_FILE

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    main(["fit", "--config", str(ROOT / "recipes" / "train_digits.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--trainer.logger", "WandbLogger", "--trainer.logger.save_dir", str(tmp_path), "--trainer.logger.offline",
          "true", "--model.C", "4", "--model.layers", "3", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
          "--trainer.enable_progress_bar", "false"])
    wandb.finish()
    (files,) = (tmp_path / "wandb").glob("offline-run-*/files")
    saved = yaml.safe_load((files / WANDB_CONFIG_FILE).read_text())
    assert saved["model"]["C"] == 4 and saved["trainer"]["max_epochs"] == 1
