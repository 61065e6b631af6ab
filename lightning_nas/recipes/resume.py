"""Resuming a recipe's run from a checkpoint: finding the last one (``--ckpt_path last``), saying whose a checkpoint
of another strategy is, and continuing in the checkpoint's own version folder with the metrics it logged so far."""

from __future__ import annotations

import csv
import inspect
import io
import os
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.loggers import CSVLogger, Logger

from lightning_nas.files import is_local, join, write_atomic
from lightning_nas.recipes import program
from lightning_nas.run_folder import lock_folder


def last_checkpoint(root: str | os.PathLike[str]) -> str | None:
    """The most recently written ``last.ckpt`` under ``root`` (a path or URL): the end of the last run there."""
    filesystem, path = fsspec.core.url_to_fs(str(root))
    found = filesystem.glob(join(path, "**", "last.ckpt"))
    if not found:
        return None
    latest = max(found, key=filesystem.modified)
    return latest if isinstance(filesystem, LocalFileSystem) else filesystem.unstrip_protocol(latest)


def other_strategy_message(path: str, model_class: type) -> str:
    """What to say of checkpoint ``path`` whose hyperparameters ``model_class`` does not take: the strategy whose
    they are and its recipe, when one of ours takes them all."""
    import torch

    from lightning_nas.strategies.darts import DARTS
    from lightning_nas.strategies.enas import ENAS
    from lightning_nas.strategies.final_training import FinalTraining

    keys = set(torch.load(path, weights_only=True, map_location="cpu").get("hyper_parameters", {})) - {"_instantiator"}
    for cls in (DARTS, ENAS, FinalTraining):
        if cls is not model_class and keys <= set(inspect.signature(cls).parameters):
            return (f"--ckpt_path {path} is a checkpoint of {cls.__name__}, not {model_class.__name__}: "
                    f"use it with {program(cls)}")
    unknown = sorted(keys - set(inspect.signature(model_class).parameters))
    return (f"--ckpt_path {path} holds hyperparameters {model_class.__name__} does not take ({', '.join(unknown)}); "
            f"give a checkpoint of {program(model_class)}")


def continue_in_checkpoint_folder(logger: Logger, ckpt_path: str | None) -> IO[str] | None:
    """Give a CSV or TensorBoard logger without a set version the version folder ``ckpt_path`` lies in
    (``<root_dir>/version_K/checkpoints/...``), so a resumed run keeps its plots, metrics, history and checkpoints
    in one folder, and lock that folder while the run lasts (returned: a second resume of the same run at once is
    refused in one line, instead of both writing every epoch's metrics and checkpoints there). Lightning's CSV writer
    deletes the metrics file of a folder it finds in use: the rows of the steps the checkpoint holds are written back
    (later ones, logged after it was saved, are trained again)."""
    root_dir = getattr(logger, "root_dir", None)
    if ckpt_path is None or root_dir is None or getattr(logger, "_version", 0) is not None:
        return None
    folder, separator, _ = str(ckpt_path).rpartition("/checkpoints/")
    root, _, version = folder.rpartition("/version_")
    (filesystem, path), (root_filesystem, root_path) = fsspec.core.url_to_fs(root), fsspec.core.url_to_fs(root_dir)
    if not separator or not version.isdigit() or (type(filesystem), path) != (type(root_filesystem), root_path):
        return None
    lock = lock_folder(folder, f"another run is resuming {ckpt_path} in {folder}", "wait for it to end; "
                       "two resumes of one run would write one folder") if is_local(folder) else None
    logger._version = int(version)  # type: ignore[attr-defined]  # CSVLogger and TensorBoardLogger keep it there
    if isinstance(logger, CSVLogger):
        keep_metrics_before(logger, ckpt_path)
    return lock


def keep_metrics_before(logger: CSVLogger, ckpt_path: str) -> None:
    """Keep the rows of ``logger``'s metrics file logged before the checkpoint's step, across the deletion of the
    file by Lightning's CSV writer when it starts."""
    import torch

    path = join(logger.log_dir, "metrics.csv")
    filesystem = fsspec.core.url_to_fs(path)[0]
    if not filesystem.isfile(path):
        return
    with filesystem.open(path, "r", newline="") as file:
        rows = list(csv.DictReader(file))
    with fsspec.open(str(ckpt_path), "rb") as file:
        global_step = torch.load(file, map_location="cpu", weights_only=True)["global_step"]
    experiment = logger.experiment  # the writer, which deletes the file
    kept = [row for row in rows if int(row["step"]) < global_step]
    if kept:
        experiment.metrics_keys = sorted(kept[0])
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=experiment.metrics_keys)
        writer.writeheader()
        writer.writerows(kept)
        write_atomic(path, text.getvalue())
