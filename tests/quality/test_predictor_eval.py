"""Algorithm 2 in the report: a whole tiny run alone and its resume, and bad options refused before any work.
(Whether its Spearman measures the predictor, planted accuracy against noise, is in ``test_planted``.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from lightning_nas.quality.__main__ import main
from lightning_nas.quality.predictor_eval import format_predictor_table


@pytest.fixture
def write_configs(tmp_path: Path, pnas_report: Callable[..., Path]) -> Callable[..., Path]:
    """Writes the tiny report config with a ``predictor_eval`` section that runs alone: K=5, M=3, T=2 unless its
    options say otherwise."""
    return lambda **options: pnas_report(tmp_path, predictor_eval={"K": 5, "M": 3, "T": 2, "only": True, **options})


@pytest.mark.slow
def test_alone_it_trains_random_cells_once_under_the_search_budget_and_resumes(tmp_path: Path, capsys,
                                                                                write_configs) -> None:
    config = write_configs()
    report = main(["--config", str(config)])
    out = tmp_path / "report"
    assert not (out / "found").exists() and not (out / "retrain.jsonl").exists()  # alone: no search, no retraining
    evaluation = report["predictor_eval"]
    assert (evaluation["K"], evaluation["M"], evaluation["T"]) == (5, 3, 2)
    assert evaluation["proxy"] == {"N": 1, "F": 4, "epochs": 1, "lr": 0.025, "limit_train_batches": 2,
                                   "lr_interval": "epoch", "seed": 0}
    [level] = evaluation["levels"]  # B=2: only b=1 -> 2
    assert level["b"] == 1 and len(level["spearman"]) == 2
    results = (out / "predictor_eval" / "results.jsonl").read_text().splitlines()
    records = {r["key"]: r for r in map(json.loads, results)}
    for repeat, value in zip(level["repeats"], level["spearman"]):
        assert repeat["spearman"] == value and len(repeat["predicted"]) == 3
        assert repeat["accuracy"] == [records[key]["accuracy"] for key in repeat["cells"]]  # true = trained
    assert {r["b"] for r in records.values()} == {1, 2} and {r["epochs"] for r in records.values()} == {1}
    assert len(records) <= 2 * (5 + 3)  # a cell drawn by both repeats is trained once
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert format_predictor_table(evaluation) in capsys.readouterr().out

    # a second run (a killed one resumed) retrains nothing and measures the same
    stamp = (out / "predictor_eval" / "results.jsonl").stat().st_mtime_ns
    assert main(["--config", str(config)])["predictor_eval"]["levels"][0]["spearman"] == level["spearman"]
    assert (out / "predictor_eval" / "results.jsonl").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "options, message",
    [
        ({"K": 1}, "predictor_eval.K=1: the predictor fits on K cells, one held-out fold per member of its "
                   "ensemble_size=5 ensemble; set K to at least 5"),
        ({"M": 1}, "predictor_eval.M=1: a Spearman correlation needs at least 2 cells; set M to 2 or more"),
        ({"T": 0}, "predictor_eval.T=0: give at least 1 repeat"),
        ({"levels": [2]}, "predictor_eval.levels=[2]: each level b must be in 1..1 (B-1 for the search's B=2)"),
        ({"levels": [0, 1]}, "predictor_eval.levels=[0, 1]: each level b must be in 1..1"),
        ({"K": 40}, "predictor_eval asks for 40 distinct random 1-block cells, but the space of ops ['identity', "
                    "'max_pool_3x3'] gave only 10: lower K or M"),
    ],
)
def test_bad_options_end_in_one_line_before_any_work(tmp_path: Path, options, message, write_configs) -> None:
    config = write_configs(**options)
    with pytest.raises(SystemExit) as exit:
        main(["--config", str(config)])
    assert str(exit.value.code).startswith(f"error: {message}") and "\n" not in str(exit.value.code)
    assert not (tmp_path / "report").exists()


def test_only_pnas_has_a_predictor_to_evaluate(tmp_path: Path, write_configs) -> None:
    config = write_configs()
    with pytest.raises(SystemExit) as exit:
        main(["--config", str(config), "--strategy", "random", "--space.name", "darts"])
    assert "predictor_eval measures the PNAS search, but the strategy is 'random'" in str(exit.value.code)
