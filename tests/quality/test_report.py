"""The found-vs-random report: its statistics, one whole run with random search on the digits, resume, bad input."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from lightning_nas.quality import rank_among, summarize
from lightning_nas.quality.__main__ import main


def test_ranks_count_the_random_architectures_that_beat_the_found_one() -> None:
    random = [0.5, 0.6, 0.7, 0.8]
    assert rank_among(0.9, random) == 1
    assert rank_among(0.65, random) == 3
    assert rank_among(0.7, random) == 2.5  # a tie counts half
    summary = summarize([0.75, 0.85], random)
    assert summary["random_median"] == pytest.approx(0.65)
    assert (summary["random_q1"], summary["random_q3"]) == (pytest.approx(0.575), pytest.approx(0.725))
    assert summary["found_mean"] == pytest.approx(0.8)
    assert summary["found_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert summary["found_ranks"] == [2, 1]
    assert summary["found_above_random_median"] == 2


def write_configs(tmp_path: Path) -> Path:
    search = {
        "space": "darts", "num_samples": 2, "N": 1, "F": 4, "epochs": 1, "limit_train_batches": 3,
        "accelerator": "cpu", "num_threads": 1,
        "data": {"class_path": "lightning_nas.data.DigitsDataModule",
                 "init_args": {"mode": "eval", "val_split": 100, "batch_size": 64}},
    }
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    report = {
        "strategy": "random", "search_config": str(tmp_path / "search.yaml"), "space": {"name": "darts"},
        "seeds": 2, "random": 3, "output_dir": str(tmp_path / "report"),
        "retrain": {"N": 1, "F": 4, "epochs": 1, "limit_train_batches": 3},
        "data": {"class_path": "lightning_nas.data.DigitsDataModule",
                 "init_args": {"mode": "eval", "batch_size": 64}},
    }
    (tmp_path / "report.yaml").write_text(yaml.safe_dump(report))
    return tmp_path / "report.yaml"


@pytest.mark.slow
def test_report_searches_retrains_found_and_random_alike_and_resumes(tmp_path: Path, capsys) -> None:
    config = write_configs(tmp_path)
    report = main(["--config", str(config)])
    out = tmp_path / "report"
    assert [f["seed"] for f in report["found"]] == [1, 2]
    assert len(report["random"]) == 3 and report["random_count"] == 3
    records = [json.loads(line) for line in (out / "retrain.jsonl").read_text().splitlines()]
    assert len(records) == 5  # 2 found + 3 random, one training seed each
    assert {r["epochs"] for r in records} == {1}  # the same budget for every architecture
    accuracy = {r["key"].split("/")[0]: r["accuracy"] for r in records}
    # the found architectures are retrained first: a report stopped while retraining keeps what only searches give
    assert list(accuracy)[:2] == [f["key"] for f in report["found"]]
    assert [f["accuracy"] for f in report["found"]] == [accuracy[f["key"]] for f in report["found"]]
    assert report["found_ranks"] == [rank_among(f["accuracy"], [r["accuracy"] for r in report["random"]])
                                     for f in report["found"]]
    assert len(report["found"][0]["signal"]["best_so_far"]) == 2  # random search: best so far per candidate
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "random median [q1,q3]" in table and "found, seed 2" in table

    assert {r["key"].split("/")[2] for r in records} == {report["code_key"]}  # one code version per verdict

    # a killed report restarts without redoing finished runs: here nothing is left to do
    stamps = {path: path.stat().st_mtime_ns for path in [out / "retrain.jsonl", *(out / "found").iterdir()]}
    (out / "searches" / "seed1" / "results.jsonl").unlink()  # a search that must not run again
    assert main(["--config", str(config)])["found_mean"] == report["found_mean"]
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert not any(found["search_resumed"] for found in report["found"])

    # a search killed before it recorded its result resumes, and the table says its time is only the rest's
    (out / "found" / "seed2.json").unlink()
    resumed = main(["--config", str(config)])
    assert [found["search_resumed"] for found in resumed["found"]] == [False, True]
    assert resumed["found"][1]["key"] == report["found"][1]["key"]
    assert "(resumed: the time after the restart)" in capsys.readouterr().out

    # searches in parallel: the second starts before the first ends, and they find what they found one by one
    together = main(["--config", str(config), "--parallel", "2", "--output_dir", str(tmp_path / "together")])
    assert [found["key"] for found in together["found"]] == [found["key"] for found in report["found"]]
    log = (tmp_path / "together" / "searches" / "seed2" / "search.log").read_text()
    second_start = datetime.fromisoformat(log.split(": ")[0].removeprefix("started ")).timestamp()
    assert second_start < (tmp_path / "together" / "found" / "seed1.json").stat().st_mtime


@pytest.mark.parametrize(
    "override, message",
    [
        (["--strategy", "bogus"], "unknown strategy 'bogus'; use one of darts, enas, pnas, random"),
        (["--strategy", "darts", "--space.name", "pnas"], "the darts strategy searches a differentiable supernet and the "
                                                          "pnas space has none: set space.name to darts or nb201"),
        (["--seeds", "0"], "seeds=0: the report needs at least 1 search seed"),
        (["--parallel", "0"], "parallel=0: at least 1 search runs at a time"),
        (["--search_config", "missing.yaml"], "search_config 'missing.yaml' is neither a file nor a shipped recipe"),
    ],
)
def test_bad_input_ends_in_one_line_before_any_work(tmp_path: Path, capsys, override, message) -> None:
    config = write_configs(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(["--config", str(config), *override])
    assert message in str(exit.value.code) and str(exit.value.code).startswith("error: ")
    assert not (tmp_path / "report").exists()


def test_a_retrain_record_without_seconds_ends_in_one_line_before_any_search(tmp_path: Path) -> None:
    config = write_configs(tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "retrain.jsonl").write_text(json.dumps({"key": "abc/seed0/k", "accuracy": 0.5}) + "\n")
    with pytest.raises(SystemExit) as exit:
        main(["--config", str(config)])
    message = str(exit.value.code)
    assert message.startswith("error: ") and "retrain.jsonl: the record of abc/seed0/k has seconds=None" in message
    assert not (tmp_path / "report" / "searches").exists()


def test_shipped_quality_configs_name_search_recipes_found_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    from lightning_nas.quality.report import search_recipe
    from lightning_nas.recipes import config_names, config_path

    monkeypatch.chdir(tmp_path)  # outside the repository, as an installed package runs
    names = [name for name in config_names() if name.startswith("quality/")]
    assert names
    for name in names:
        value = yaml.safe_load(config_path(name).read_text())["search_config"]
        assert Path(search_recipe(value)) == config_path(value)


def test_signal_of_a_finished_search_that_was_resumed_comes_from_its_trained_run(tmp_path: Path) -> None:
    """Resuming a finished search re-exports its genotype into a newer run folder that holds no history."""
    from lightning_nas.quality.searches import search_signal

    trained, resumed = (tmp_path / "lightning_logs" / version / "checkpoints" for version in ("version_0", "version_1"))
    for folder in (trained, resumed):
        folder.mkdir(parents=True)
        (folder / "genotype.json").write_text("{}")
    records = [{"epoch": e, "metrics": {"arch/entropy_normal": 2.0 - e / 10, "train/loss": 1.0}} for e in range(3)]
    (trained / "genotype_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    os.utime(resumed / "genotype.json", (1e10, 1e10))  # the re-export is the newest file
    assert search_signal("darts", tmp_path) == {"arch/entropy_normal": [2.0, 1.9, 1.8]}
