import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_nas.callbacks import DARTSEarlyStopping
from lightning_nas.genotypes import Genotype
from lightning_nas.recipes import darts
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.spaces.darts import SearchNetwork
from lightning_nas.strategies.darts import DARTS

ROOT = Path(__file__).resolve().parents[2]
TINY_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--model.C", "4", "--model.layers", "3"]


def run(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"lightning_nas.recipes.{module}", "fit", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_digits_search_prints_the_command_that_trains_its_genotype_file(tmp_path):
    search = run("darts", "--config", "recipes/darts_digits.yaml", "--trainer.default_root_dir", str(tmp_path / "search"),
                 *TINY_RUN, "--model.arch_warmup_epochs", "0")
    printed = re.search(r"written to (\S+)", search.stdout)
    assert printed, search.stdout[-2000:]
    genotype_file = Path(printed.group(1))
    assert genotype_file.is_file() and genotype_file.is_relative_to(tmp_path / "search")
    genotype = Genotype.load(genotype_file)
    assert genotype.describe() in search.stdout
    assert re.search(r"α entropy \(nats\): normal 2\.079 -> \d\.\d{3} \([+-]\d+% of log 8\), reduce", search.stdout)
    assert re.search(r"supernet val/top1: 0\.\d{4}", search.stdout)

    command = re.search(r"train the found cells: python (.*)", search.stdout).group(1)
    assert command == f"-m lightning_nas.recipes.train fit --config train_digits --model.genotype {genotype_file}"
    run("train", *shlex.split(command)[3:], "--trainer.default_root_dir", str(tmp_path / "train"),
        "--trainer.logger", "false", *TINY_RUN, cwd=tmp_path)  # the printed command works from any folder
    assert list((tmp_path / "train").rglob("*.ckpt"))


def test_a_nan_loss_ends_the_search_with_one_line_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    original = DARTS.training_step

    def poisoned(self, batch, batch_idx):
        if (self.current_epoch, batch_idx) == (1, 0):
            batch["arch"][0].fill_(float("nan"))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DARTS, "training_step", poisoned)
    args = ["fit", "--config", str(ROOT / "recipes" / "darts_digits.yaml"), "--trainer.default_root_dir", str(tmp_path),
            *TINY_RUN, "--trainer.max_epochs", "2", "--trainer.logger", "false", "--model.arch_warmup_epochs", "0"]
    with pytest.raises(SystemExit) as exit_info:
        darts.main(args)
    assert exit_info.value.code == (
        "error: DARTS search diverged: non-finite loss or gradient in the α step of epoch 1, step 0; stopped before "
        "updating, so the last checkpoint and genotype.json hold the last good state (lower arch_lr or w_lr?)")

    (last,) = tmp_path.rglob("last.ckpt")
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["epoch"] == 0
    state = checkpoint["state_dict"]
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())
    network = SearchNetwork(C=4, layers=3, num_classes=10, in_chans=1)
    network.load_state_dict({k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")})
    assert Genotype.load(last.parent / "genotype.json") == network.genotype()  # epoch 0's, from finite α


def test_robust_recipe_caps_skip_connect_and_stops_early():
    cli = run_recipe(DARTS, ["--config", str(ROOT / "recipes" / "darts_robust.yaml")], run=False)
    assert cli.model.hparams.max_skip_connect == 2
    (stopping,) = [c for c in cli.trainer.callbacks if isinstance(c, DARTSEarlyStopping)]
    assert (stopping.max_skip_connect, stopping.patience) == (1, 3)


def test_pcdarts_recipe_has_the_papers_settings():
    cli = run_recipe(DARTS, ["--config", str(ROOT / "recipes" / "pcdarts_cifar10.yaml")], run=False)
    hp = cli.model.hparams
    assert (hp.partial_channels, hp.w_lr, hp.arch_lr, hp.arch_warmup_epochs) == (4, 0.1, 6e-4, 15)
    assert cli.datamodule.batch_size == 256 and cli.trainer.max_epochs == 50
    assert len(cli.model.network.arch_parameters()) == 4  # α and the edge-normalisation β of both cell types


def test_fmnist_recipe_searches_a_reduced_network_on_fashion_mnist_with_alpha_warm_up():
    cli = run_recipe(DARTS, ["--config", str(ROOT / "recipes" / "darts_fmnist.yaml")], run=False)
    hp = cli.model.hparams
    assert (hp.C, hp.layers, hp.in_chans, hp.arch_warmup_epochs, hp.train_config) == (
        8, 5, 1, 4, "train_fmnist")
    assert cli.datamodule.mode == "search" and cli.trainer.limit_train_batches == 40


@pytest.mark.parametrize(("recipe", "sampler", "beta_decay"), [
    ("darts_nb201_fmnist", "softmax", 0.0), ("gdas_nb201_fmnist", "gumbel", 0.0),
    ("betadarts_nb201_fmnist", "softmax", 0.6)])
def test_nb201_recipes_use_the_papers_arch_optimizer(recipe, sampler, beta_decay):
    cli = run_recipe(DARTS, ["--config", str(ROOT / "recipes" / f"{recipe}.yaml")], run=False)
    hp = cli.model.hparams
    assert (hp.space, hp.C, hp.layers, hp.in_chans, hp.sampler, hp.beta_decay) == (
        "nb201", 8, 3, 1, sampler, beta_decay)
    assert (hp.arch_lr, hp.arch_weight_decay, hp.arch_relaxation_steps, hp.tau_max, hp.tau_min) == (
        3e-4, 1e-3, None, 10.0, 0.1)
    assert cli.datamodule.mode == "search"


def test_a_negative_beta_decay_is_refused_in_one_line():
    with pytest.raises(SystemExit) as exit_info:
        darts.main(["fit", "--config", str(ROOT / "recipes" / "betadarts_nb201_fmnist.yaml"),
                    "--model.beta_decay", "-1"])
    assert exit_info.value.code == "error: --model.beta_decay must be greater than or equal to 0, got -1"


def test_reuse_example_runs(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("## Reuse the DARTS search space in your own LightningModule", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "darts_reuse"})
    output = capsys.readouterr().out
    assert output.count("), (") >= 7  # the one-cell architecture: 8 (op, input) edges
    assert "normal cell" in output and "reduce cell" in output


def test_a_run_prints_no_third_party_notices_and_no_genotype_between_epochs(tmp_path, capsys, caplog, recwarn):
    darts.main(["fit", "--config", "darts_digits", "--trainer.default_root_dir", str(tmp_path), *TINY_RUN,
                "--trainer.max_epochs", "2", "--model.C", "2"])
    out, err = capsys.readouterr()
    printed = out + err + caplog.text + "".join(str(warning.message) for warning in recwarn)
    assert not any(notice in printed for notice in ("litlogger", "tensorboardX", "LeafSpec"))
    assert printed.count("normal cell (output") == 1  # the final architecture only; each epoch's goes to the history
    (history,) = tmp_path.glob("**/genotype_history.jsonl")
    assert len(history.read_text().splitlines()) == 2
