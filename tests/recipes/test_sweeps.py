"""Every W&B sweep file's command, expanded the way ``wandb agent`` expands it, must parse with its recipe's CLI."""

from pathlib import Path

import pytest
import yaml

from lightning_nas.recipes.cli import run_recipe
from lightning_nas.strategies.darts import DARTS
from lightning_nas.strategies.final_training import FinalTraining

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "recipes" / "sweeps").glob("*.yaml"))
RECIPE_MODELS = {"lightning_nas.recipes.darts": DARTS, "lightning_nas.recipes.train": FinalTraining}


def _sample(spec: dict):
    """A value the agent could draw: the last listed value, or the upper end of a range."""
    return spec["values"][-1] if "values" in spec else spec["max"]


def _agent_command(sweep: dict) -> list[str]:
    """Expand ${env}, ${interpreter}, ${program} and ${args} like the W&B agent (args as --name=value)."""
    args = [f"--{name}={yaml.safe_dump(_sample(spec)).splitlines()[0]}" for name, spec in sweep["parameters"].items()]
    command: list[str] = []
    for part in sweep["command"]:
        if part == "${args}":
            command += args
        elif part == "${program}":
            command.append(sweep["program"])
        elif part not in ("${env}", "${interpreter}"):
            command.append(part)
    return command


def test_there_are_sweeps_for_search_and_final_training() -> None:
    assert {path.stem for path in SWEEPS} >= {"darts_search", "train"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_command_parses_with_the_recipe_cli(path: Path, monkeypatch, tmp_path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"] and sweep["method"] in ("grid", "random", "bayes")
    command = _agent_command(sweep)
    assert command[0] == "-m" and command[2] == "fit"
    model_class = RECIPE_MODELS[command[1]]
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cli = run_recipe(model_class, command[3:], run=False)
    for name, spec in sweep["parameters"].items():
        section, key = name.split(".", 1)
        target = cli.model if section == "model" else cli.datamodule
        assert getattr(target, "hparams", {}).get(key, getattr(target, key, None)) == _sample(spec), name
    assert type(cli.trainer.logger).__name__ == "WandbLogger"
