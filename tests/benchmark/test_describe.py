"""A built table's noise and agreement figures, on planted tables whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_nas.benchmark.describe import describe, main
from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
from lightning_nas.spaces import create_space


def built_table(path: Path, noise: float, sign: float = 1.0) -> BenchmarkTable:
    """60 CIFAR-10 cells scored as ``sign`` times their CIFAR-10 accuracy (rescaled into 0-100) plus seeded noise,
    the first 30 with a second seed."""
    space = create_space("nb201")
    cifar10 = BenchmarkTable.read(resolve_table("nb201-cifar10"), space)
    rng = np.random.default_rng(0)
    keys = list(cifar10.scores)[::250][:60]
    lines = ["arch,heldout_acc,seed,budget,cpu_s"]
    for index, key in enumerate(keys):
        base = 50 + sign * (cifar10.scores[key] - 50) / 2
        for seed in (0, 1)[: 2 if index < 30 else 1]:
            score = float(np.clip(base + rng.normal(0, noise), 0, 100))
            lines.append(f"{space.to_string(space.decode([int(c) for c in key]))},{score:.2f},{seed},b,10")
    path.write_text("\n".join(lines) + "\n")
    return BenchmarkTable.read(path, space, complete=False)


def test_a_faithful_quiet_table_agrees_and_a_noisy_or_reversed_one_does_not(tmp_path: Path) -> None:
    cifar10 = BenchmarkTable.read(resolve_table("nb201-cifar10"), create_space("nb201"))
    quiet = describe(built_table(tmp_path / "q.csv", noise=0.01), cifar10)
    assert quiet["cells"] == 60 and quiet["repeated_cells"] == 30
    assert quiet["spearman_between_seeds"] > 0.99 and quiet["spearman_against"] > 0.99
    assert quiet["sd_between_seeds"] == pytest.approx(0.01, rel=0.5)
    assert quiet["against_top1pct_mean"] == quiet["against_best_in_sample"]
    noisy = describe(built_table(tmp_path / "n.csv", noise=30.0), cifar10)
    assert noisy["spearman_between_seeds"] < 0.5 and noisy["sd_between_seeds"] > noisy["sd_between_cells_repeated"] / 2
    reversed_ = describe(built_table(tmp_path / "r.csv", noise=0.01, sign=-1.0), cifar10)
    assert reversed_["spearman_against"] < -0.99 and reversed_["against_top1pct_mean"] < reversed_["against_mean"]


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: --table"),
    (["--table", "nb201-fmnist", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_bad_option_is_one_line(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"python -m lightning_nas.benchmark describe: error: {message} (see --help)\n"
