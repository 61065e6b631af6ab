import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.data import DigitsDataModule
from lightning_nas.data.pnas_results import ResultsFile
from lightning_nas.genotypes import Genotype
from lightning_nas.strategies.pnas import PNASSearch

TINY = dict(B=2, K=2, N=1, F=4, epochs=1, lr=0.05, limit_train_batches=2, ops=["identity", "sep_conv_3x3"],
            predictor_epochs=3, accelerator="cpu")
"""10 one-block cells and K=2 two-block cells, one epoch of 2 batches each: 12 candidates."""


def search(output_dir) -> PNASSearch:
    return PNASSearch(DigitsDataModule(mode="eval", val_split=200, batch_size=128), output_dir=str(output_dir), **TINY)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> PNASSearch:
    """One uninterrupted single-process search, shared by the tests that compare against it."""
    finished = search(tmp_path_factory.mktemp("reference"))
    finished.run()
    return finished


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


def test_search_rejects_data_without_held_out_images(tmp_path):
    with pytest.raises(ValueError, match="val_split > 0"):
        PNASSearch(DigitsDataModule(mode="eval"), output_dir=str(tmp_path))


def test_search_records_progress_and_plots_predicted_vs_true_accuracy(reference):
    progress = json.loads((reference.output_dir / "progress.json").read_text())
    assert progress == reference.progress and [level["b"] for level in progress] == [1, 2]
    assert [level["candidates"] for level in progress] == [10, 2]
    records = {json.dumps(r["cell"]): r["accuracy"] for r in reference.results.read()}
    for level in progress:
        assert level["best_accuracy"] == max(records[json.dumps(c.to_list())] for c in reference.beams[level["b"]])
    assert "spearman" not in progress[0] and -1 <= progress[1]["out_of_fold_spearman"] <= 1
    # the recorded correlation is that of the predictions (made before training) with the accuracies found after
    predicted = reference.predict(reference.fit_predictor(2)[0], reference.beams[2])
    actual = [records[json.dumps(c.to_list())] for c in reference.beams[2]]
    correlation = float(spearman_corrcoef(torch.tensor(predicted), torch.tensor(actual)))
    assert progress[1]["spearman"] == pytest.approx(correlation)
    with Image.open(reference.output_dir / "plots" / "predicted_vs_true_b2.png") as image:
        assert image.format == "PNG" and min(image.size) > 100
    assert sorted(p.name for p in (reference.output_dir / "plots").iterdir()) == ["predicted_vs_true_b2.png"]


@pytest.mark.slow
def test_killed_search_resumes_skipping_finished_candidates_and_ends_with_the_same_beam(reference, tmp_path,
                                                                                        monkeypatch):
    genotype = Genotype.load(reference.output_dir / "genotype.json")
    assert [len(reference.beams[b]) for b in (1, 2)] == [10, 2]  # 4 halves: 4 * 5 / 2 one-block cells; K = 2
    assert len(reference.results.read()) == 12

    trained, kill_after = [], [None]
    original = PNASSearch.train_candidate

    def train_candidate(self, cell, *args):
        if len(trained) == kill_after[0]:
            raise KeyboardInterrupt("killed")
        trained.append(cell)
        return original(self, cell, *args)

    monkeypatch.setattr(PNASSearch, "train_candidate", train_candidate)
    for kill_after[0] in (7, 11):  # mid-level 1; then mid-level 2, where the predictor must ignore level-2 results
        with pytest.raises(KeyboardInterrupt):
            search(tmp_path / "resumed").run()
        (tmp_path / "resumed" / ".results.jsonl.999.tmp").write_text('{"b": 1, "cell": [[0, ')  # killed mid-append
    kill_after[0] = None
    resumed = search(tmp_path / "resumed")
    assert resumed.run() == genotype
    assert len(trained) == len(set(trained)) == 12  # every candidate trained once: resumes skipped finished ones
    assert resumed.beams == reference.beams
    assert Genotype.load(tmp_path / "resumed" / "genotype.json") == genotype
    assert resumed.progress == reference.progress
    by_cell = {json.dumps(r["cell"]): r["accuracy"] for r in reference.results.read()}
    assert {json.dumps(r["cell"]): r["accuracy"] for r in resumed.results.read()} == by_cell


@pytest.mark.slow
def test_two_ranks_split_the_beam_and_find_what_one_process_finds(reference, tmp_path):
    args = ["fit", "--config", "recipes/pnas_digits.yaml", f"--output_dir={tmp_path}", "--data.init_args.val_split=200",
            "--data.init_args.batch_size=128", *(f"--{key}={value}" for key, value in TINY.items() if key != "ops"),
            f"--ops=[{', '.join(TINY['ops'])}]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "lightning_nas.recipes.pnas", *args],
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records = ResultsFile(tmp_path / "results.jsonl").read()
    assert len(records) == 12 and len({json.dumps(r["cell"]) for r in records}) == 12
    for rank in (0, 1):  # each rank trained its half of every level
        assert run.stdout.count(f"[PNAS rank {rank}] b=1:") == 5 and run.stdout.count(f"[PNAS rank {rank}] b=2:") == 1
    # every candidate trained on all the data, as in one process: same accuracies, beam, progress and answer
    assert {json.dumps(r["cell"]): r["accuracy"] for r in records} == {
        json.dumps(r["cell"]): r["accuracy"] for r in reference.results.read()}
    assert json.loads((tmp_path / "progress.json").read_text()) == reference.progress
    assert Genotype.load(tmp_path / "genotype.json") == Genotype.load(reference.output_dir / "genotype.json")
