import json

import pytest

from lightning_nas.data.pnas_results import PredictorDataModule, ResultsFile
from lightning_nas.errors import ConfigError


def test_results_file_survives_a_kill_mid_write(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")
    results.append({"cell": [[0, 1, "identity", "identity"]], "accuracy": 0.5})
    (tmp_path / ".results.jsonl.123.tmp").write_text('{"cell": [[0, 0, "ident')  # a writer killed before its rename
    assert results.read() == [{"cell": [[0, 1, "identity", "identity"]], "accuracy": 0.5}]
    with open(results.path, "a") as file:  # a file copied mid-write ends in half a line
        file.write('{"cell": [[0, 0, "identity"')
    with pytest.warns(UserWarning, match="truncated last line"):
        assert len(results.read()) == 1
    with pytest.warns(UserWarning):
        results.append({"cell": [[0, 0, "identity", "identity"]], "accuracy": 0.25})
    assert [r["accuracy"] for r in results.read()] == [0.5, 0.25]
    results.path.write_text('{"bad"\n{"cell": [], "accuracy": 1}\n')
    with pytest.raises(ValueError, match="results.jsonl:1 is not valid JSON"):
        results.read()


def test_a_second_record_of_the_same_key_is_ignored(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")  # as two unlocked searches once wrote it
    rows = (("a", 0.5), ("b", 0.25), ("a", 0.75), ("b", 0.0), ("c", 1.0))
    results.path.write_text("".join(json.dumps({"key": key, "accuracy": accuracy}) + "\n" for key, accuracy in rows))
    assert [(r["key"], r["accuracy"]) for r in results.read()] == [("a", 0.5), ("b", 0.25), ("c", 1.0)]
    results.append({"key": "a", "accuracy": 0.125})
    assert [(r["key"], r["accuracy"]) for r in results.read()] == [("a", 0.5), ("b", 0.25), ("c", 1.0)]


def test_the_file_is_bound_to_one_configuration(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")
    config = {"data": {"class": "Digits", "val_split": 300}, "epochs": 3, "lr": 0.05, "F": 8}
    results.bind(config)
    assert json.loads((tmp_path / "results.fingerprint.json").read_text()) == config
    results.bind(dict(config))  # the same configuration resumes
    changed = {"data": {"class": "Digits", "val_split": 200}, "epochs": 5, "lr": 0.05, "F": 8, "ops": ["identity"]}
    with pytest.raises(ConfigError) as refused:
        results.bind(changed)
    message = str(refused.value)
    assert "\n" not in message and "results.jsonl holds results of another configuration" in message
    assert "data.val_split 300 -> 200, epochs 3 -> 5, ops None -> ['identity']" in message
    assert "lr" not in message.split("(")[1] and "F " not in message


def test_a_key_added_to_the_fingerprint_later_reads_as_the_value_older_files_were_made_under(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")
    results.bind({"epochs": 3})  # written before "schedule" joined the fingerprint
    results.bind({"epochs": 3, "schedule": "epoch"}, added={"schedule": "epoch"})
    with pytest.raises(ConfigError, match=r"\(schedule 'epoch' -> 'step'\)"):
        results.bind({"epochs": 3, "schedule": "step"}, added={"schedule": "epoch"})
    with pytest.raises(ConfigError, match=r"\(schedule None -> 'epoch'\)"):  # unannounced, it is a change
        results.bind({"epochs": 3, "schedule": "epoch"})


def test_folds_are_drawn_within_each_level_and_training_may_skip_levels():
    records = [{"cell": [b, i], "accuracy": i / 10, "b": b} for b, count in ((1, 10), (2, 4)) for i in range(count)]
    data = PredictorDataModule(records, lambda cell: [1, 2, 3, 4][: 2 * cell[0]], num_folds=5)
    folds = [fold for _, _, fold in data.samples]
    assert sorted(folds[:10]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # level 1 alone fills every fold evenly
    assert len(set(folds[10:])) == 4  # level 2's four results land in four different folds
    # a later level does not move an earlier result to another fold
    assert [f for _, _, f in PredictorDataModule(records[:10], lambda c: [1, 2], num_folds=5).samples] == folds[:10]
    newest = PredictorDataModule(records, lambda cell: [1, 2, 3, 4][: 2 * cell[0]], num_folds=5, train_levels={2})
    assert [len(tokens) for tokens, _, _ in newest.trained] == [4] * 4
    assert next(iter(newest.val_dataloader()))["tokens"].shape[0] == 14
