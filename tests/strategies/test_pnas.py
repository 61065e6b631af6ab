import json
import os
import subprocess
import sys

import pytest

from lightning_nas.data import DigitsDataModule
from lightning_nas.data.pnas_results import ResultsFile
from lightning_nas.genotypes import Genotype
from lightning_nas.spaces.pnas import PNASCell
from lightning_nas.strategies.pnas import PNASSearch

TINY = dict(B=2, K=2, N=1, F=4, epochs=1, lr=0.05, ops=["identity", "max_pool_3x3"], predictor_epochs=3,
            accelerator="cpu")


def search(output_dir) -> PNASSearch:
    return PNASSearch(DigitsDataModule(mode="eval", val_split=200, batch_size=256), output_dir=str(output_dir), **TINY)


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


@pytest.mark.slow
def test_killed_search_resumes_skipping_finished_candidates_and_ends_with_the_same_beam(tmp_path, monkeypatch):
    reference = search(tmp_path / "reference")
    genotype = reference.run()
    assert [len(reference.beams[b]) for b in (1, 2)] == [10, 2]  # 4 halves: 4 * 5 / 2 one-block cells; K = 2
    assert len(reference.results.read()) == 12

    trained, kill_after = [], [7]
    original = PNASSearch.train_candidate

    def train_candidate(self, cell, *args):
        if len(trained) == kill_after[0]:
            raise KeyboardInterrupt("killed")
        trained.append(cell)
        return original(self, cell, *args)

    monkeypatch.setattr(PNASSearch, "train_candidate", train_candidate)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "resumed").run()
    (tmp_path / "resumed" / ".results.jsonl.999.tmp").write_text('{"b": 1, "cell": [[0, ')  # killed mid-append
    trained.clear()
    kill_after[0] = None
    resumed = search(tmp_path / "resumed")
    assert resumed.run() == genotype
    assert len(trained) == 12 - 7  # only the unfinished candidates were trained
    assert resumed.beams == reference.beams
    assert Genotype.load(tmp_path / "resumed" / "genotype.json") == genotype
    by_cell = {json.dumps(r["cell"]): r["accuracy"] for r in reference.results.read()}
    assert {json.dumps(r["cell"]): r["accuracy"] for r in resumed.results.read()} == by_cell


@pytest.mark.slow
def test_two_ranks_split_the_beam_and_agree_on_it(tmp_path):
    args = ["fit", "--config", "recipes/pnas_digits.yaml", f"--output_dir={tmp_path}", "--B=2", "--K=2", "--N=1",
            "--F=4", "--epochs=1", "--ops=[identity, max_pool_3x3]", "--predictor_epochs=3",
            "--data.init_args.batch_size=256"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "lightning_nas.recipes.pnas", *args],
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records = ResultsFile(tmp_path / "results.jsonl").read()
    assert len(records) == 12 and len({json.dumps(r["cell"]) for r in records}) == 12
    for rank in (0, 1):
        assert f"[PNAS rank {rank}] b=2" in run.stdout
    assert PNASCell.from_genotype(Genotype.load(tmp_path / "genotype.json"), ops=TINY["ops"])
