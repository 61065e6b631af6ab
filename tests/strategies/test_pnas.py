import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest
import torch
from PIL import Image
from torch import nn
from torchmetrics.functional import spearman_corrcoef

from lightning_nas.callbacks import WeightInheritance
from lightning_nas.data import DigitsDataModule
from lightning_nas.files import write_atomic
from lightning_nas.spaces import SPACES, SearchSpace, spaces_offering
from lightning_nas.strategies.candidates import ResultsFile
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.spaces.pnas import PNASCell
from lightning_nas.strategies.pnas import PNASSearch, expand_beam

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
    predicted = reference.predict(reference.predictor_after(1)[0], reference.beams[2])
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
            f"--ops=[{', '.join(TINY['ops'])}]", "--correlation_sample=0"]  # the reference trains no sample
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", "-m", "lightning_nas.recipes.pnas", *args],
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records = ResultsFile(tmp_path / "results.jsonl").read()
    assert len(records) == 12 and len({json.dumps(r["cell"]) for r in records}) == 12
    claimed = [[run.stdout.count(f"[PNAS rank {rank}] b={b}:") for b in (1, 2)] for rank in (0, 1)]
    assert [sum(level) for level in zip(*claimed)] == [10, 2] and all(sum(mine) for mine in claimed)  # both worked
    # every candidate trained on all the data, as in one process: same accuracies, beam, progress and answer
    assert {json.dumps(r["cell"]): r["accuracy"] for r in records} == {
        json.dumps(r["cell"]): r["accuracy"] for r in reference.results.read()}
    assert json.loads((tmp_path / "progress.json").read_text()) == reference.progress
    assert Genotype.load(tmp_path / "genotype.json") == Genotype.load(reference.output_dir / "genotype.json")


# ------------------------------------------------------------------ synthetic training: a known accuracy, no training
SYNTHETIC = dict(B=3, K=4, ops=["identity", "sep_conv_3x3"], predictor_epochs=5, correlation_sample=3,
                 accelerator="cpu", num_threads=1)
"""10 one-block cells, then 4 chosen + 3 random children at b=2 and b=3: 24 candidates at most."""


def synthetic_accuracy(cell: PNASCell) -> float:
    """A known function of the cell, between 0.3 and 0.85: separable convs and reading the previous cell's output
    (input 1) score."""
    halves = [half for block in cell.blocks for half in block.halves()]
    score = sum({"sep_conv_3x3": 1.0, "identity": 0.5}[op] + 0.1 * (index == 1) for index, op in halves) / len(halves)
    return 0.3 + score / 2


def synthetic_candidate(self, cell, b, parent, reference):
    return {"key": cell.key(), "b": b, "cell": cell.to_list(), "accuracy": synthetic_accuracy(cell), "curve": [],
            "epochs": 1, "seconds": 0.0, "stopped_epoch": None, "stopped_early": False}


def synthetic_search(output_dir, **kwargs) -> PNASSearch:
    return PNASSearch(DigitsDataModule(val_split=100), output_dir=str(output_dir), **{**SYNTHETIC, **kwargs})


def outcome(output_dir: Path) -> tuple:
    """What a finished search leaves: its answer, its per-level progress and every result (without timings)."""
    records = {r["key"]: r["accuracy"] for r in ResultsFile(output_dir / "results.jsonl").read()}
    return (Genotype.load(output_dir / "genotype.json"), json.loads((output_dir / "progress.json").read_text()),
            records)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> PNASSearch:
    """One uninterrupted single-process synthetic search, fine-tuning its predictor level by level."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PNASSearch, "train_candidate", synthetic_candidate)
        finished = synthetic_search(tmp_path_factory.mktemp("synthetic"))
        finished.run()
    return finished


def test_progress_reports_the_predictor_on_a_random_sample_of_the_expansion_and_out_of_fold(synthetic):
    progress = synthetic.progress
    assert [level["candidates"] for level in progress] == [10, 4, 4]
    for level in progress[1:]:
        assert level["sample_size"] == 3 and -1 <= level["sample_spearman"] <= 1
        assert 0.5 < level["out_of_fold_spearman"] <= 1  # the synthetic accuracy is learnable
    # the sample comes from the whole expansion of the level-1 beam, and joins neither the beam nor the predictor
    expansion = expand_beam(synthetic.growth, synthetic.beams[1])
    sampled = [PNASCell.from_list(r["cell"]) for r in synthetic.results.read()
               if r["b"] == 2 and PNASCell.from_list(r["cell"]) not in synthetic.beams[2]]
    assert 1 <= len(sampled) <= 3 and all(cell in expansion for cell in sampled)
    assert not {c.key() for c in sampled} & {r["key"] for r in synthetic.predictor_records(3)}
    assert synthetic.predictor_after(1)[1] == progress[1]["out_of_fold_spearman"]
    with Image.open(synthetic.output_dir / "plots" / "predicted_vs_true_b2.png") as image:
        assert image.format == "PNG"


def test_the_predictor_is_fine_tuned_level_by_level_or_refit(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(PNASSearch, "train_candidate", synthetic_candidate)
    first, second = synthetic.predictor_after(1)[0], synthetic.predictor_after(2)[0]
    saved = torch.load(synthetic.output_dir / "predictor" / "b2.pt", weights_only=True)
    assert json.loads(saved["settings"])["update"] == "finetune"
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in second.state_dict().items())
    assert not torch.equal(first.state_dict()["members.0.head.weight"], second.state_dict()["members.0.head.weight"])
    # fine-tuning continues from the level-1 ensemble: its weights stay near them; a refit starts from scratch
    refit = synthetic_search(tmp_path, predictor_update="refit")
    refit.run()
    start = first.state_dict()
    states = {"finetune": second.state_dict(), "refit": refit.predictor_after(2)[0].state_dict()}
    distance = {name: sum(float((state[k] - v).norm()) for k, v in start.items()) for name, state in states.items()}
    assert distance["finetune"] < 0.5 * distance["refit"]


def test_a_killed_search_resumes_to_the_same_beams_with_or_without_the_saved_predictors(synthetic, tmp_path,
                                                                                          monkeypatch):
    trained, kill_after = [], [None]

    def train_candidate(self, cell, *args):
        if len(trained) == kill_after[0]:
            raise KeyboardInterrupt("killed")
        trained.append(cell)
        return synthetic_candidate(self, cell, *args)

    monkeypatch.setattr(PNASSearch, "train_candidate", train_candidate)
    for kill_after[0] in (12, 20):  # mid-level 2, then mid-level 3
        with pytest.raises(KeyboardInterrupt):
            synthetic_search(tmp_path).run()
        shutil.rmtree(tmp_path / "predictor")  # the ensembles are re-derived level by level from the results
    kill_after[0] = None
    resumed = synthetic_search(tmp_path)
    resumed.run()
    assert len(trained) == len(set(trained)) == len(synthetic.results.read())
    assert resumed.beams == synthetic.beams and resumed.progress == synthetic.progress
    assert outcome(tmp_path) == outcome(synthetic.output_dir)


def test_early_terminated_candidates_train_no_predictor_and_are_never_the_best(tmp_path, monkeypatch):
    def train_candidate(self, cell, b, parent, reference):
        record = synthetic_candidate(self, cell, b, parent, reference)
        if b == 2 and cell.key().count("1:") % 2:  # truncated runs that happened to score high
            record.update(accuracy=2.0, stopped_epoch=1, stopped_early=True)
        return record

    monkeypatch.setattr(PNASSearch, "train_candidate", train_candidate)
    search = synthetic_search(tmp_path, B=2, K=8, correlation_sample=0)
    search.run()
    level = search.progress[1]
    stopped = {r["key"] for r in search.results.read() if r.get("stopped_early")}
    assert 0 < len(stopped) == level["stopped_early"] < 8
    assert PNASCell.from_list(level["best_cell"]).key() not in stopped and level["best_accuracy"] < 2.0
    trained = {c.key() for c in search.beams[1] + search.beams[2]}
    assert {r["key"] for r in search.predictor_records(2)} == trained - stopped


def test_a_restart_under_another_budget_or_a_concurrent_search_is_refused(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(PNASSearch, "train_candidate", synthetic_candidate)
    shutil.copytree(synthetic.output_dir, tmp_path, dirs_exist_ok=True)
    with pytest.raises(ConfigError, match=r"^\S+results.jsonl holds results of another configuration \(F 24 -> 16, "
                                          r"early_termination False -> True, epochs 20 -> 5\)"):
        synthetic_search(tmp_path, epochs=5, F=16, early_termination=True).run()
    holder = synthetic_search(tmp_path)
    with holder.pool.running():
        with pytest.raises(ConfigError, match="another search is running on"):
            synthetic_search(tmp_path).run()
    assert synthetic_search(tmp_path).run() == outcome(synthetic.output_dir)[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"B": 0}, "B (blocks per cell, one level each) must be at least 1, got 0"),
    ({"K": 0}, "K (beam: candidates trained per level) must be at least 1, got 0"),
    ({"epochs": 0}, "epochs (per candidate) must be at least 1, got 0"),
    ({"ops": []}, "ops is empty"),
    ({"ensemble_size": 11}, "ensemble_size (predictors, one held-out fold each) must be between 1 and the 10 one-"),
    ({"predictor_update": "average"}, "predictor_update must be 'finetune' (the paper) or 'refit', got 'average'"),
    ({"correlation_sample": -1}, "correlation_sample (extra random children per level) must be >= 0, got -1"),
    ({"rank_timeout": 0}, "rank_timeout (seconds) must be positive, got 0"),
])
def test_bad_arguments_are_refused_in_one_line_before_any_training(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as refused:
        synthetic_search(tmp_path, **kwargs)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not any(tmp_path.iterdir())


def test_wandb_gets_one_run_with_the_candidates_best_cell_scatters_and_genotype(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setattr(PNASSearch, "train_candidate", synthetic_candidate)
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="lightning-nas-test")
    search = synthetic_search(tmp_path / "search", logger=logger)
    search.run()
    import wandb

    run_id = logger.experiment.id
    logger.experiment.finish()  # this run: returns once its exit record is handled
    wandb.teardown()  # closes the service's streams, so the run log is on disk (under load it was not, at finish)
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")  # one run for the whole search
    media = run_dir / "files" / "media"
    tables = sorted((media / "table").glob("candidates_*.table.json"), key=lambda p: p.stat().st_mtime)
    assert len(tables) == 3  # one per level, each with every candidate so far
    last = json.loads(tables[-1].read_text())
    assert last["columns"] == ["cell", "b", "accuracy", "epochs", "stopped early"]
    assert len(last["data"]) == len(search.results.read()) and {row[1] for row in last["data"]} == {1, 2, 3}
    row = next(r for r in last["data"] if r[0] == PNASCell.from_list(search.progress[-1]["best_cell"]).key())
    assert row[2] == search.progress[-1]["best_accuracy"] and row[4] is False
    images = {str(p.relative_to(media / "images")) for p in (media / "images").rglob("*.png")}
    assert sum(name.startswith("best_cell") for name in images) == 3
    assert sum(name.startswith("predictor/scatter") for name in images) == 2  # levels 2 and 3
    (run_log,) = run_dir.glob("*.wandb")  # the offline run log that `wandb sync` uploads
    assert f"genotype-{run_id}".encode() in run_log.read_bytes()


def test_any_lightning_logger_gets_the_per_level_numbers(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(PNASSearch, "train_candidate", synthetic_candidate)
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="pnas")
    synthetic_search(tmp_path / "search", logger=logger).run()
    rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    for row, level in zip(rows, synthetic.progress):
        assert float(row["pnas/best_accuracy"]) == pytest.approx(level["best_accuracy"])
        assert float(row["pnas/candidates"]) == level["candidates"]
        for key in ("spearman", "sample_spearman", "out_of_fold_spearman"):
            logged = row[f"pnas/{key}"]
            assert logged == "" if level["b"] == 1 else float(logged) == pytest.approx(level[key])
    assert "predictor_update: finetune" in (Path(logger.log_dir) / "hparams.yaml").read_text()


# ------------------------------------------------------------- a space of the test's own, grown one layer a step
LAYER_OPS = ("conv", "pool")


@dataclass(frozen=True)
class Layers:
    """The toy space's architecture: a chain of layers, one op of LAYER_OPS each."""

    ops: tuple[str, ...]

    def save(self, path: str | os.PathLike) -> str:
        return write_atomic(path, json.dumps({"ops": list(self.ops)}))


class LayerNetwork(nn.Module):
    def __init__(self, arch: Layers, num_classes: int, in_chans: int, C: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, C, 3, padding=1)
        self.layers = nn.ModuleList(nn.Conv2d(C, C, 3, padding=1) if op == "conv" else nn.MaxPool2d(3, 1, 1)
                                    for op in arch.ops)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.classifier(x.mean((2, 3)))


class LayerGrowth:
    """Chains grown one layer a step: a child appends a layer, inheriting its parent's layers, stem and classifier."""

    step = ("ops",)

    def __init__(self, depth: int) -> None:
        self.levels, self.vocabularies, self.settings = depth, {"ops": len(LAYER_OPS)}, {"space": "layers"}

    def first(self) -> list[Layers]:
        return [Layers((op,)) for op in LAYER_OPS]

    def children(self, grown: Layers) -> list[Layers]:
        return [Layers(grown.ops + (op,)) for op in LAYER_OPS]

    def key(self, grown: Layers) -> str:
        return "-".join(grown.ops)

    def to_data(self, grown: Layers) -> list[str]:
        return list(grown.ops)

    def from_data(self, data: list[str]) -> Layers:
        return Layers(tuple(data))

    def architecture(self, grown: Layers) -> Layers:
        return grown

    def tokens(self, grown: Layers) -> list[int]:
        return [LAYER_OPS.index(op) for op in grown.ops]

    def inheritance(self, parent: Layers, child: Layers, N: int) -> dict[str, str | None]:
        return {f"layers.{i}": f"layers.{i}" if i < len(parent.ops) else None for i in range(len(child.ops))}


class LayerSpace(SearchSpace):
    """A space defined here, not in the package: chains of ``nodes`` layers (PNAS's B reaches it as ``nodes``). It
    offers progressive growth and nothing one-shot."""

    name = "layers"

    def __init__(self, nodes: int = 3) -> None:
        self.depth = nodes

    def choices(self) -> tuple[int, ...]:
        return (len(LAYER_OPS),) * self.depth

    def decisions(self, arch: Layers) -> tuple[int, ...]:
        return tuple(LAYER_OPS.index(op) for op in arch.ops)

    def decode(self, decisions: Sequence[int]) -> Layers:
        return Layers(tuple(LAYER_OPS[d] for d in decisions))

    def to_json(self, arch: Layers) -> str:
        return json.dumps({"ops": list(arch.ops)})

    def from_json(self, text: str) -> Layers:
        return Layers(tuple(json.loads(text)["ops"]))

    def build(self, arch: Layers, num_classes: int, in_chans: int, C: int, N: int) -> nn.Module:
        return LayerNetwork(arch, num_classes, in_chans, C)

    def progressive(self) -> LayerGrowth:
        return LayerGrowth(self.depth)


def test_a_space_of_ones_own_with_progressive_growth_is_searched_and_children_inherit_their_parents_layers(
        tmp_path, monkeypatch):
    monkeypatch.setitem(SPACES, "layers", LayerSpace)
    assert LayerSpace.offers("progressive") and not LayerSpace.offers("shared_child")
    inherited: list[tuple[list[str], list[str]]] = []

    class Spy(WeightInheritance):
        def on_fit_start(self, trainer, pl_module) -> None:
            super().on_fit_start(trainer, pl_module)
            inherited.append((self.copied, self.fresh))

    monkeypatch.setattr("lightning_nas.strategies.pnas.WeightInheritance", Spy)
    found = PNASSearch(DigitsDataModule(mode="eval", val_split=200, batch_size=128), output_dir=str(tmp_path),
                       **{**TINY, "ops": None}, space="layers", ensemble_size=2, inherit_weights=True).run()
    assert isinstance(found, Layers) and len(found.ops) == 2
    assert json.loads((tmp_path / "genotype.json").read_text()) == {"ops": list(found.ops)}
    records = ResultsFile(tmp_path / "results.jsonl").read()
    assert sorted(len(r["cell"]) for r in records) == [1, 1, 2, 2] and all(r["genotype"]["ops"] == r["cell"]
                                                                           for r in records)
    # each of the K=2 children copied its parent's stem, layer and classifier, and started its new layer fresh
    assert len(inherited) == 2
    for copied, fresh in inherited:
        assert {"network.stem.weight", "network.classifier.weight"} <= set(copied)
        assert all(name.startswith("network.layers.1.") for name in fresh)


@pytest.mark.parametrize("planted, best", [("conv", ("conv",) * 4), ("pool", ("pool",) * 4)])
def test_pnas_finds_the_planted_best_chain_of_a_space_of_ones_own(tmp_path, monkeypatch, planted, best):
    """The accuracy is the share of ``planted`` layers: at levels 3 and 4 the predictor ranks the 8 children of the
    beam and keeps K=4, which must hold the best both times (1 in 4 by chance; 16 of 16 seeds did); planting the other
    op (the negative control) finds the other chain."""
    monkeypatch.setitem(SPACES, "layers", LayerSpace)

    def train_candidate(self, cell, b, parent, reference):
        accuracy = 0.3 + 0.5 * cell.ops.count(planted) / len(cell.ops)
        return {"key": self.growth.key(cell), "b": b, "cell": list(cell.ops), "accuracy": accuracy, "curve": [],
                "epochs": 1, "seconds": 0.0, "stopped_epoch": None, "stopped_early": False}

    monkeypatch.setattr(PNASSearch, "train_candidate", train_candidate)
    search = PNASSearch(DigitsDataModule(val_split=100), output_dir=str(tmp_path), space="layers", B=4, K=4,
                        predictor="mlp", predictor_epochs=100, ensemble_size=2, accelerator="cpu", num_threads=1)
    assert search.run() == Layers(best)
    assert [level["candidates"] for level in search.progress] == [2, 4, 4, 4]
    assert search.progress[-1]["best_cell"] == list(best)


@pytest.mark.parametrize("name", [name for name in sorted(SPACES) if not SPACES[name].offers("progressive")])
def test_a_space_without_progressive_growth_is_refused_in_one_line_before_any_training(tmp_path, name):
    with pytest.raises(ConfigError) as refused:
        PNASSearch(DigitsDataModule(mode="eval", val_split=100), output_dir=str(tmp_path), space=name, B=3,
                   ops=["identity"])
    assert str(refused.value) == (f"the {name} space has no progressive growth, which PNAS searches level by level; "
                                  f"spaces that have one: {', '.join(spaces_offering('progressive'))}")
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- two processes, one store
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


WORKER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}


def launch_ranks(output_dir: Path, world_size: int, slow_rank: int, die_rank: int, rank_timeout: float) -> list:
    """``world_size`` processes as a launcher starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), each running this
    file's synthetic search."""
    env = {**WORKER_ENV, "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    return [subprocess.Popen([sys.executable, __file__, str(output_dir), str(slow_rank), str(die_rank), "1",
                              str(rank_timeout)], env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(world_size)]


@pytest.mark.slow
def test_two_ranks_claim_candidates_as_they_free_up_and_find_what_one_process_finds(synthetic, tmp_path):
    ranks = launch_ranks(tmp_path, 2, slow_rank=1, die_rank=-1, rank_timeout=60)
    outputs = [rank.communicate(timeout=300) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    claimed = [stdout.count(f"[PNAS rank {rank}] ") for rank, (stdout, _) in enumerate(outputs)]
    assert sum(claimed) == len(synthetic.results.read()) and claimed[0] > 2 * claimed[1] > 0  # the slow rank did less
    assert outcome(tmp_path) == outcome(synthetic.output_dir)


@pytest.mark.slow
def test_a_dead_rank_ends_the_search_with_an_error_after_the_timeout(tmp_path):
    start = time.monotonic()
    ranks = launch_ranks(tmp_path, 2, slow_rank=-1, die_rank=1, rank_timeout=3)
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert ranks[1].returncode == 3 and ranks[0].returncode == 1
    assert "RankDied: rank 0 waited for every rank at b=1, but rank 1 sent no heartbeat for 3 s" in outputs[0][1]
    assert time.monotonic() - start < 150  # mostly two interpreters starting on a loaded machine


@pytest.mark.slow
def test_a_torchrun_restart_reads_nothing_its_first_attempt_left_in_the_store(synthetic, tmp_path):
    # rank 1 dies at its first candidate of the first attempt; the agent restarts both ranks on the same store, where
    # the first attempt's claim counters and barrier keys would let the second skip candidates or pass barriers early
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--max_restarts=1",
                          f"--master_port={free_port()}", __file__, str(tmp_path), "0", "1", "1", "60"],
                         env=WORKER_ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("[PNAS] b=1: training") == 4  # both ranks, both attempts
    assert outcome(tmp_path) == outcome(synthetic.output_dir)


if __name__ == "__main__":  # one rank: a synthetic search, rank slow_rank slow, die_rank killed at level die_level
    output_dir, slow_rank, die_rank, die_level = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rank, rank_timeout = int(os.environ["RANK"]), float(sys.argv[5])

    def train_candidate(self, cell, b, *args):
        if rank == die_rank and b == die_level and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            os._exit(3)
        time.sleep(0.5 if rank == slow_rank else 0.02)
        return synthetic_candidate(self, cell, b, *args)

    PNASSearch.train_candidate = train_candidate
    synthetic_search(output_dir, rank_timeout=rank_timeout).run()
