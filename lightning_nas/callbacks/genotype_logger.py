"""Track how a search's architecture evolves: a history file always, and W&B tables, diagrams and heat maps when
a WandbLogger is attached."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol, Sequence, cast

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_nas.callbacks.genotype_export import SearchModule
from lightning_nas.files import append_text, join, read_text, write_atomic
from lightning_nas.run_folder import run_directory, run_id
from lightning_nas.genotypes import Genotype, cell_diagram_png
from lightning_nas.plots import alpha_heatmap_png, png_image


class AlphaModule(Protocol):
    """A search with continuous architecture weights (DARTS), whose softmax(α) the heat maps show."""

    @property
    def op_names(self) -> Sequence[str]: ...

    def alpha_weights(self) -> dict[str, torch.Tensor]: ...


class GenotypeLogger(pl.Callback):
    """Log the architecture a search currently derives, once per epoch on rank zero (never in the sanity check).

    Works with any LightningModule that has ``genotype()``. Every epoch appends a JSON line (epoch, run id,
    architecture, the scalar metrics the strategy logged, such as α entropy or controller reward) to
    ``<checkpoint dir>/<filename>`` whatever the logger. The records also travel in the checkpoint: a fit rewrites
    the file at its start to the epochs before the one it starts from, so a resumed run's history is whole (also in a
    new run folder) and never repeats an epoch, and a fresh one starts it empty; it writes the whole file again at its
    end, so a finished search resumed into a new folder (which trains no epoch) holds its history there too.
    With a WandbLogger it also logs a ``genotypes`` table (one row per epoch so far), the cell
    diagrams, and, for modules with ``alpha_weights()`` and ``op_names`` (DARTS), a heat map of softmax(α) minus
    uniform (``alpha_heatmap_png``), which is also saved as a PNG under ``<checkpoint dir>/plots``. At the end of fit
    the final genotype JSON becomes a W&B artifact.
    """

    def __init__(self, filename: str = "genotype_history.jsonl", heatmaps: bool = True) -> None:
        self.filename = filename
        self.heatmaps = heatmaps
        self._rows: list[list[Any]] = []
        self._columns: list[str] = []
        self._records: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"records": self._records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._records = list(state_dict.get("records", []))

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the records of the epochs the fit restored (the checkpoint's; the file's, for a checkpoint from
        before records were kept), none after them: a kill between this file's write and the checkpoint's would
        otherwise repeat an epoch."""
        if not self._records:
            self._records = _read_records(read_text(self._path(trainer)) or "")
        self._records = [record for record in self._records if record["epoch"] < trainer.current_epoch]
        self._write_records(trainer)

    def _path(self, trainer: pl.Trainer) -> str:
        return join(run_directory(trainer), self.filename)

    def _write_records(self, trainer: pl.Trainer) -> None:
        """The history file holds exactly the records kept, one JSON line each."""
        write_atomic(self._path(trainer), "".join(json.dumps(record) + "\n" for record in self._records))

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        architecture = cast(SearchModule, pl_module).genotype()
        epoch = trainer.current_epoch
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1)
        }
        record = {"epoch": epoch, "run": run_id(trainer), "genotype": _as_data(architecture), "metrics": metrics}
        self._records.append(record)
        directory = run_directory(trainer)
        append_text(join(directory, self.filename), json.dumps(record) + "\n")

        heatmap = None
        if self.heatmaps and hasattr(pl_module, "alpha_weights"):
            title = f"softmax(α) − 1/#ops, epoch {epoch}"
            darts = cast(AlphaModule, pl_module)
            heatmap = alpha_heatmap_png(darts.alpha_weights(), list(darts.op_names), title)
            write_atomic(join(directory, "plots", f"alpha_epoch{epoch:03d}.png"), heatmap)

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                self._log_to_wandb(logger, epoch, architecture, metrics, heatmap, trainer.global_step)

    def _log_to_wandb(
        self, logger: WandbLogger, epoch: int, architecture: Any, metrics: dict[str, float], heatmap: bytes | None,
        step: int,
    ) -> None:
        import wandb

        if isinstance(architecture, Genotype):
            cells = [architecture.describe(("normal",)), architecture.describe(("reduce",))]
        else:
            cells = [str(architecture), ""]
        if not self._columns:
            self._columns = ["epoch", "normal cell", "reduction cell", *sorted(metrics)]
        self._rows.append([epoch, *cells, *(metrics.get(key, math.nan) for key in self._columns[3:])])
        payload: dict[str, Any] = {"genotypes": wandb.Table(columns=list(self._columns), data=list(self._rows))}
        if isinstance(architecture, Genotype):
            for cell in ("normal", "reduce"):
                payload[f"cell/{cell}"] = wandb.Image(png_image(cell_diagram_png(architecture, cell)),
                                                      caption=f"{cell} cell, epoch {epoch}")
        if heatmap is not None:
            payload["alpha/heatmap"] = wandb.Image(png_image(heatmap), caption=f"softmax(α) − 1/#ops, epoch {epoch}")
        logger.experiment.log({**payload, "epoch": epoch}, step=step)

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_records(trainer)
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not wandb_loggers:
            return
        import wandb

        architecture = cast(SearchModule, pl_module).genotype()
        architecture.save(join(run_directory(trainer), "final_genotype.json"))
        for logger in wandb_loggers:
            artifact = wandb.Artifact(f"genotype-{logger.experiment.id}", type="genotype")
            with artifact.new_file("final_genotype.json") as file:  # the run folder may be remote
                file.write(json.dumps(_as_data(architecture), indent=1) + "\n")
            logger.experiment.log_artifact(artifact)


def _read_records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line a kill cut short
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def _as_data(architecture: Any) -> Any:
    return architecture.to_dict() if hasattr(architecture, "to_dict") else str(architecture)

