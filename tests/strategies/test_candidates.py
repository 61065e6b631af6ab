import dataclasses
import json
import math
import random

import lightning.pytorch as pl

import pytest

from lightning_nas.data import DigitsDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.darts import random_genotype
from lightning_nas.strategies.candidates import CandidatePool, ProxyBudget, ResultsFile

BUDGET = {field.name for field in dataclasses.fields(ProxyBudget)}


def pool(tmp_path, **kwargs) -> CandidatePool:
    """A pool on the digits; ``kwargs`` of ``ProxyBudget`` make its budget, the others go to the data or the pool."""
    data = DigitsDataModule(val_split=kwargs.pop("val_split", 100), num_workers=kwargs.pop("num_workers", 0))
    budget = ProxyBudget(**{name: kwargs.pop(name) for name in list(kwargs) if name in BUDGET})
    return CandidatePool(data, tmp_path / "results.jsonl", budget, **kwargs)


def test_the_budget_keeps_the_fingerprint_keys_results_files_were_written_with(tmp_path):
    """A results file written before the budget was one value resumes: the pool's fingerprint has the same keys and
    values; ``network_options`` joins it only where given (so a file without it reads as none given)."""
    fingerprint = pool(tmp_path, N=1, F=4, epochs=2, lr=0.1, limit_train_batches=3).fingerprint
    assert fingerprint == {"data": fingerprint["data"], "N": 1, "F": 4, "epochs": 2, "lr": 0.1,
                           "limit_train_batches": 3, "limit_val_batches": 1.0, "lr_interval": "epoch", "seed": 0}
    assert pool(tmp_path, network_options={"C": 8}).fingerprint["network_options"] == {"C": 8}


@pytest.mark.parametrize("kwargs, message", [
    ({"N": 0}, "N (cells per stage of the proxy network) must be at least 1, got 0"),
    ({"F": 0}, "F (channels of the proxy network's first cells) must be at least 1, got 0"),
    ({"epochs": 0}, "epochs (per candidate) must be at least 1, got 0"),
    ({"lr": float("nan")}, "lr must be a positive finite number, got nan"),
    ({"limit_val_batches": 0}, "limit_val_batches must be positive, got 0"),
])
def test_a_bad_budget_is_refused_in_one_line_where_it_is_made(kwargs, message):
    with pytest.raises(ConfigError) as refused:
        ProxyBudget(**kwargs)
    assert str(refused.value) == message


def test_the_budget_reaches_a_space_network_as_the_options_it_takes():
    """F and N become C and N where the space's build takes them (ENAS's macro network takes no N), and the
    budget's ``network_options`` over them; an option the network lacks is refused in one line."""
    from lightning_nas.spaces import create_space

    budget = ProxyBudget(N=1, F=4)
    assert budget.network(create_space("nb201")) == {"C": 4, "N": 1}
    assert budget.network(create_space("enas_macro")) == {"C": 4}
    assert ProxyBudget(F=4, network_options={"N": 3}).network(create_space("darts")) == {"C": 4, "N": 3}
    with pytest.raises(ConfigError, match="^the nb201 network does not take width; its options: C, N$"):
        ProxyBudget(network_options={"width": 2}).network(create_space("nb201"))


def fake_train(key: str) -> dict:
    return {"key": key, "accuracy": len(key) / 10}


def test_a_restart_with_another_budget_is_refused_naming_what_changed(tmp_path):
    first = pool(tmp_path, epochs=3, lr=0.05, F=8, settings={"ops": ["identity"]})
    assert first.train_all("all", ["a", "bb"], fake_train) == {"a": fake_train("a"), "bb": fake_train("bb")}
    stored = json.loads((tmp_path / "results.fingerprint.json").read_text())
    assert stored["epochs"] == 3 and stored["data"]["class"] == "lightning_nas.data.digits.DigitsDataModule"
    assert stored["data"]["val_split"] == 100 and "num_workers" not in stored["data"]
    # loading the images in more workers changes no accuracy: the run resumes, training nothing again
    resumed = pool(tmp_path, epochs=3, lr=0.05, F=8, settings={"ops": ["identity"]}, num_workers=2)
    assert resumed.train_all("all", ["a", "bb"], lambda key: pytest.fail(f"{key} trained twice")) == {
        "a": fake_train("a"), "bb": fake_train("bb")}
    changed = pool(tmp_path, epochs=5, lr=0.1, F=8, settings={"ops": ["identity", "max_pool_3x3"]}, val_split=50)
    with pytest.raises(ConfigError) as refused:
        changed.train_all("all", ["a", "bb", "ccc"], fake_train)
    assert str(refused.value) == (
        f"{tmp_path / 'results.jsonl'} holds results of another configuration (data.val_split 100 -> 50, "
        f"epochs 3 -> 5, lr 0.05 -> 0.1, ops ['identity'] -> ['identity', 'max_pool_3x3']): restore those settings "
        f"to resume it, or give another output folder")
    assert len(resumed.finished()) == 2


def test_a_second_run_on_the_same_results_file_refuses_to_start_while_the_first_holds_it(tmp_path):
    first, second = pool(tmp_path), pool(tmp_path)
    with first.running():
        with pytest.raises(ConfigError, match="another search is running on .*results.jsonl"):
            second.train_all("all", ["a"], fake_train)
        assert first.train_all("all", ["a"], fake_train) == {"a": fake_train("a")}  # re-entrant for its holder
    assert second.train_all("all", ["a", "bb"], fake_train)["bb"] == fake_train("bb")  # released at the end


def test_a_diverging_candidate_stops_the_search_naming_it_and_writes_no_result(tmp_path):
    diverging = pool(tmp_path, N=1, F=4, epochs=1, lr=1e30, limit_train_batches=4)
    genotype = random_genotype(random.Random(0))
    with pytest.raises(FloatingPointError, match=r"^candidate c0 diverged: train/loss is (nan|inf) in epoch 0, step "
                                                 r"\d \(candidate training\); lower the candidates' lr$"):
        diverging.train_all("all", ["c0"], lambda key: diverging.train(key, genotype)[1])
    assert diverging.finished() == {}
    # the same candidate with a sane lr trains and is written
    sane = pool(tmp_path / "sane", N=1, F=4, epochs=1, lr=0.05, limit_train_batches=4)
    assert 0 <= sane.train_all("all", ["c0"], lambda key: sane.train(key, genotype)[1])["c0"]["accuracy"] <= 1


def test_a_remote_results_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^memory://r/results.jsonl is not a local path: a search locks its results"):
        CandidatePool(DigitsDataModule(val_split=100), "memory://r/results.jsonl")


class LRs(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("interval, expected", [
    ("epoch", [0.1] * 3 + [0.05] * 3),  # the papers' code: cos(pi * epoch / epochs), epoch 1 of 2 at half
    ("step", [0.05 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]),  # down to 0.0067 by the last batch
])
def test_the_cosine_schedule_steps_per_epoch_or_per_batch_to_its_end(tmp_path, interval, expected):
    candidates = pool(tmp_path, N=1, F=4, epochs=2, lr=0.1, limit_train_batches=3, lr_interval=interval)
    lrs = LRs()
    candidates.train("c0", random_genotype(random.Random(0)), callbacks=[lrs])
    assert lrs.seen == pytest.approx(expected)
    assert candidates.fingerprint["lr_interval"] == interval  # a results file of the other schedule is refused


def test_an_unknown_lr_interval_is_refused_before_any_training(tmp_path):
    with pytest.raises(ConfigError, match="^lr_interval must be 'epoch' or 'step', got 'batch'$"):
        pool(tmp_path, lr_interval="batch")


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
    results.append({"key": "a", "accuracy": 0.5})
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
    results.append({"key": "a", "accuracy": 0.5})
    results.bind({"epochs": 3, "schedule": "epoch"}, added={"schedule": "epoch"})
    with pytest.raises(ConfigError, match=r"\(schedule 'epoch' -> 'step'\)"):
        results.bind({"epochs": 3, "schedule": "step"}, added={"schedule": "epoch"})
    with pytest.raises(ConfigError, match=r"\(schedule None -> 'epoch'\)"):  # unannounced, it is a change
        results.bind({"epochs": 3, "schedule": "epoch"})


def test_code_key_changes_with_the_code_and_threads_that_change_the_numbers(tmp_path) -> None:
    import shutil

    import torch

    from lightning_nas.strategies.candidates import NUMERIC_CODE, PACKAGE, code_key

    key = code_key()
    copy = tmp_path / "lightning_nas"
    for part in NUMERIC_CODE:
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (PACKAGE / part).is_dir() else shutil.copy)(PACKAGE / part, copy / part)
    assert code_key(copy) == key  # the same code elsewhere: the same key
    (copy / "ops" / "primitives.py").write_text((copy / "ops" / "primitives.py").read_text() + "\n# changed\n")
    assert code_key(copy) != key
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert code_key() != key
    finally:
        torch.set_num_threads(threads)


def test_a_run_that_failed_before_any_result_does_not_block_its_corrected_rerun(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")
    results.bind({"lr": -1.0})  # the run then stopped on its bad lr, before any candidate finished
    results.bind({"lr": 0.05})
    results.append({"key": "a", "accuracy": 0.5})
    with pytest.raises(ConfigError, match=r"lr 0.05 -> -1.0"):
        results.bind({"lr": -1.0})


def test_a_corrupt_middle_line_or_fingerprint_ends_in_one_line(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")
    results.path.write_text('{"key": "a", "accuracy": 0.5}\n{"key": "b", "acc\n{"key": "c", "accuracy": 0.25}\n')
    with pytest.raises(ConfigError, match=r"results.jsonl:2 is not valid JSON; repair or remove that line"):
        results.read()
    results.path.write_text('{"key": "a", "accuracy": 0.5}\n')
    results.fingerprint_path.write_text('{"epochs": ')
    with pytest.raises(ConfigError, match="fingerprint.json is not valid JSON .*delete it to adopt"):
        results.bind({"epochs": 3})


def test_a_candidate_rebuilds_its_space_with_the_options_the_space_was_created_with(tmp_path, monkeypatch):
    """A space's options (not only its name) reach the candidate's network, as every rebuild of the space must."""
    from lightning_nas.spaces import create_space
    from lightning_nas.strategies import candidates

    rebuilt: list[tuple[str, dict]] = []

    def spy(name: str, **options):
        rebuilt.append((name, options))
        return create_space(name, **options)

    monkeypatch.setattr(candidates, "create_space", spy)
    space = create_space("nb201", ops=["nor_conv_3x3", "skip_connect"])
    assert space.options == {"ops": ["nor_conv_3x3", "skip_connect"]}
    trained = pool(tmp_path, N=1, F=4, epochs=1, limit_train_batches=1, space=space)
    trained.train("k", space.sample(random.Random(0)))
    assert rebuilt == [("nb201", {"ops": ["nor_conv_3x3", "skip_connect"]})]
