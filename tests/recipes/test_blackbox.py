"""The black-box recipe: one recipe for every method of the table, each method's own command, and resume across
them (the training itself is replaced by a planted accuracy: ``tests/strategies/test_blackbox_search.py`` trains)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from lightning_nas.quality.searches import STRATEGIES
from lightning_nas.recipes import blackbox, config_path, evolution
from lightning_nas.strategies.blackbox import METHODS


def test_every_method_of_the_table_has_its_command_config_and_report_row() -> None:
    for name in METHODS:
        assert importlib.import_module(f"lightning_nas.recipes.{name}").main
        assert config_path(f"{name}_digits").is_file()
        assert name in STRATEGIES and not STRATEGIES[name].lightning
    assert blackbox.command("local") == "python -m lightning_nas.recipes.local"


def search_args(folder: Path) -> list[str]:
    return ["fit", "--config", "evolution_digits", "--output_dir", str(folder), "--space", "nb201",
            "--num_samples", "6", "--data.init_args.val_split", "100"]


def test_a_method_command_and_the_black_box_recipe_run_one_search(tmp_path: Path, planted: list[str]) -> None:
    """``python -m lightning_nas.recipes.evolution`` and ``... blackbox --method evolution`` are the same search: the
    second resumes the first's results file and trains nothing again."""
    best = evolution.main(search_args(tmp_path))
    assert len(planted) == 6
    assert json.loads((tmp_path / "progress.json").read_text())["strategy"] == "evolution"
    assert blackbox.main([*search_args(tmp_path), "--method", "evolution"]) == best
    assert len(planted) == 6
    with pytest.raises(SystemExit, match="strategy 'evolution' -> 'local'"):  # another method: refused
        blackbox.main([*search_args(tmp_path), "--method", "local", "--options", "{}"])


@pytest.mark.parametrize("extra, message", [
    (["--method", "annealing"], f"error: unknown search method 'annealing'; known: {', '.join(METHODS)}, or a "
                                "search function of your own"),
])
def test_bad_method_ends_in_one_line(tmp_path: Path, planted: list[str], extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        blackbox.main([*search_args(tmp_path), *extra])
    assert str(exit_info.value.code).startswith(message)
    assert not planted


def test_a_method_command_takes_no_other_method(tmp_path: Path, planted: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        evolution.main([*search_args(tmp_path), "--method", "random"])
    assert str(exit_info.value.code).startswith("error: unknown option --method; "
                                                "`python -m lightning_nas.recipes.evolution fit --help`")
