import io
import json
import struct
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.callbacks.genotype_logger import GenotypeLogger
from lightning_nas.plots import alpha_heatmap_png
from lightning_nas.genotypes import resolve_genotype

OPS = ["none", "max_pool_3x3", "sep_conv_3x3"]


class ToySearch(pl.LightningModule):
    """A stand-in strategy: its genotype flips with the epoch, it logs an α-entropy-like metric."""

    op_names = OPS

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.alpha = torch.nn.Parameter(torch.randn(14, len(OPS)))

    def genotype(self):
        return resolve_genotype("DARTS_V1" if self.current_epoch % 2 else "DARTS_V2")

    def alpha_weights(self) -> dict[str, torch.Tensor]:
        return {"normal": self.alpha.softmax(-1), "reduce": self.alpha.flip(0).softmax(-1)}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log("alpha_entropy/normal", float(self.current_epoch) + 0.5, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)


def _fit(tmp_path: Path, logger) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=2, logger=logger, callbacks=[GenotypeLogger()], default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
    )
    trainer.fit(ToySearch(), _loader(), _loader())
    return trainer


def _history(trainer: pl.Trainer) -> list[dict]:
    path = Path(trainer.checkpoint_callback.dirpath) / "genotype_history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_history_is_written_without_wandb(tmp_path: Path) -> None:
    trainer = _fit(tmp_path, CSVLogger(tmp_path))
    history = _history(trainer)
    assert [row["epoch"] for row in history] == [0, 1]  # one per epoch, none for the sanity check
    assert history[0]["genotype"] == resolve_genotype("DARTS_V2").to_dict()
    assert history[1]["genotype"] == resolve_genotype("DARTS_V1").to_dict()
    assert history[1]["metrics"]["alpha_entropy/normal"] == pytest.approx(1.5)
    plots = sorted((Path(trainer.checkpoint_callback.dirpath) / "plots").glob("alpha_epoch*.png"))
    assert [p.name for p in plots] == ["alpha_epoch000.png", "alpha_epoch001.png"]


def test_wandb_offline_run_holds_table_diagrams_heatmaps_and_artifact(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="lightning-nas-test")
    trainer = _fit(tmp_path, logger)
    import wandb

    run_id = logger.experiment.id
    logger.experiment.finish()  # this run, not whatever wandb.run is: returns once the exit record is handled
    wandb.teardown()  # closes the service's streams, so the run log is flushed to disk
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    tables = sorted((run_dir / "files" / "media" / "table").glob("genotypes_*.table.json"),
                    key=lambda p: int(p.name.split("_")[1]))
    last = json.loads(tables[-1].read_text())
    assert last["columns"][:3] == ["epoch", "normal cell", "reduction cell"]
    assert [row[0] for row in last["data"]] == [0, 1]
    assert "node 2 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})" in last["data"][0][1]
    assert last["data"][1][last["columns"].index("alpha_entropy/normal")] == pytest.approx(1.5)
    images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
    names = {str(p.relative_to(run_dir / "files" / "media" / "images")) for p in images}
    assert any(n.startswith("cell/normal") for n in names) and any(n.startswith("alpha/heatmap") for n in names)
    assert all(Image.open(p).size[0] > 100 for p in images)
    assert (Path(trainer.checkpoint_callback.dirpath) / "final_genotype.json").exists()
    (run_log,) = run_dir.glob("*.wandb")  # the offline run log that `wandb sync` uploads
    records = wandb_records(run_log)
    assert records[0].WhichOneof("record_type") == "header" and records[-1].WhichOneof("record_type") == "exit"
    artifacts = {record.artifact.name: record.artifact.type for record in records
                 if record.WhichOneof("record_type") == "artifact"}
    assert artifacts[f"genotype-{run_id}"] == "genotype"  # beside the tables' run-<id>-genotypes artifacts


WANDB_HEADER = 7
"""``:W&B``, a 2-byte magic and a version byte, then a LevelDB-style log of protobuf Records in 32 KiB blocks."""
LOG_BLOCK = 32768
FULL, LAST = 1, 4


def wandb_records(path: Path) -> list:
    """The Records of an offline run log, read as ``wandb sync`` reads them: chunks of 7-byte headers (checksum,
    little-endian length, type) joined until a FULL or LAST chunk; a block tail under 7 bytes is padding."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, position = [], [], WANDB_HEADER
    while position + 7 <= len(data):
        left = LOG_BLOCK - position % LOG_BLOCK
        if left < 7:
            position += left
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (FULL, LAST):
            records.append(Record.FromString(b"".join(chunks)))
            chunks = []
    return records


class Crash(pl.Callback):
    """A kill after the history's write and before the checkpoint's: raises at the end of ``epoch`` (monitoring
    callbacks such as ModelCheckpoint run after the others)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise InterruptedError("killed")


def _fit_with_checkpoints(root: Path, max_epochs: int, callbacks: list[pl.Callback], ckpt_path: str | None = None):
    trainer = pl.Trainer(max_epochs=max_epochs, logger=CSVLogger(root, version=0), default_root_dir=root,
                         callbacks=[GenotypeLogger(heatmaps=False), *callbacks, ModelCheckpoint(save_last=True)],
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(ToySearch(), _loader(), _loader(), ckpt_path=ckpt_path)
    return trainer


def test_a_resumed_run_rewrites_the_history_from_the_checkpoints_epoch(tmp_path: Path) -> None:
    with pytest.raises(InterruptedError):
        _fit_with_checkpoints(tmp_path, 4, [Crash(epoch=2)])
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    with open(folder / "genotype_history.jsonl", "a") as history:
        history.write('{"epoch": 2, "gen')  # and a line the kill cut short
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 1

    trainer = _fit_with_checkpoints(tmp_path, 4, [], ckpt_path=str(folder / "last.ckpt"))
    history = _history(trainer)
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert {row["run"] for row in history} == {"version_0"}
    assert history[2]["genotype"] == resolve_genotype("DARTS_V2").to_dict()


def test_a_fresh_run_starts_its_history_empty(tmp_path: Path) -> None:
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "genotype_history.jsonl").write_text('{"epoch": 0, "run": "another"}\n{"epoch": 5, "run": "another"}\n')
    history = _history(_fit_with_checkpoints(tmp_path, 1, []))
    assert [(row["epoch"], row["run"]) for row in history] == [(0, "version_0")]


def test_heat_map_colours_show_small_differences_from_uniform() -> None:
    def saturated_pixels(weights: torch.Tensor) -> int:
        png = alpha_heatmap_png({"normal": weights}, OPS)
        rgb = torch.tensor(list(Image.open(io.BytesIO(png)).convert("RGB").getdata()))
        red, blue = rgb[:, 0] > rgb[:, 2] + 60, rgb[:, 2] > rgb[:, 0] + 60
        return int(red.sum()), int(blue.sum())

    uniform = torch.full((14, 3), 1 / 3)
    # Early in a search softmax(α) differs from uniform by 1e-3: each panel's own scale still shows it in full colour.
    nudged = uniform + 1e-3 * torch.tensor([1.0, -1.0, 0.0]).repeat(14, 1)
    (red_uniform, blue_uniform), (red, blue) = saturated_pixels(uniform), saturated_pixels(nudged)
    assert red > red_uniform + 5000 and blue > blue_uniform + 5000  # the colour bar alone has some of each


def test_a_run_resumed_into_a_new_folder_holds_the_whole_history(tmp_path: Path) -> None:
    def fit(max_epochs: int, version: int, ckpt_path: str | None = None) -> pl.Trainer:
        trainer = pl.Trainer(max_epochs=max_epochs, logger=CSVLogger(tmp_path, version=version),
                             callbacks=[GenotypeLogger(heatmaps=False), ModelCheckpoint(save_last=True)],
                             default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(ToySearch(), _loader(), _loader(), ckpt_path=ckpt_path)
        return trainer

    first = fit(2, version=0)
    resumed = fit(4, version=1, ckpt_path=first.checkpoint_callback.last_model_path)
    history = _history(resumed)
    assert [(row["epoch"], row["run"]) for row in history] == [
        (0, "version_0"), (1, "version_0"), (2, "version_1"), (3, "version_1")]
    assert history[:2] == _history(first)


def test_a_finished_run_resumed_into_a_new_folder_writes_its_history_there(tmp_path: Path) -> None:
    first = _fit_with_checkpoints(tmp_path, 2, [])
    again = pl.Trainer(max_epochs=2, logger=CSVLogger(tmp_path, version=1), default_root_dir=tmp_path,
                       callbacks=[GenotypeLogger(heatmaps=False), ModelCheckpoint(save_last=True)],
                       enable_progress_bar=False, enable_model_summary=False)
    again.fit(ToySearch(), _loader(), _loader(), ckpt_path=first.checkpoint_callback.last_model_path)
    assert again.global_step == first.global_step  # it trained nothing
    assert _history(again) == _history(first) and len(_history(first)) == 2
