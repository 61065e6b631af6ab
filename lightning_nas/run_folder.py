"""Each run's own folder: where its files go, its exclusive claim on it, its name in records."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path
from typing import IO, Protocol, cast

import fsspec
import lightning.pytorch as pl
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.loggers import Logger

from lightning_nas.errors import ConfigError
from lightning_nas.files import is_local, join


class VersionedLogger(Protocol):
    """The parts of Lightning's CSV and TensorBoard loggers that ``claim_version`` uses."""

    root_dir: str
    _version: int | str | None

    def _get_next_version(self) -> int: ...


def run_directory(trainer: pl.Trainer) -> str:
    """The folder (a path or URL) of this run's checkpoints (the logger's run folder when no checkpoint callback is
    set), where every file of the run goes."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    if dirpath:
        return str(dirpath)
    # not trainer.log_dir: it broadcasts, and this is called on rank zero only
    if not trainer.loggers:
        return str(trainer.default_root_dir)
    logger = trainer.loggers[0]
    return str(getattr(logger, "log_dir", None) or logger.save_dir or trainer.default_root_dir)


def claim_version(logger: Logger) -> str | None:
    """Give a CSV or TensorBoard logger without a set version the first ``version_N`` folder this process creates
    itself. Lightning picks max(N) + 1 from a listing, so two runs started together in one root both take the same
    folder; an exclusive ``mkdir`` fails for all but one of them, so each run's folder (checkpoints, genotype, config,
    history) is its own. Call it on rank zero before the fit resolves its folders; the recipes do. Object stores have
    no folders to claim: there the first free version is only likely to stay free. Returns the folder claimed."""
    if getattr(logger, "_version", 0) is not None or not hasattr(logger, "_get_next_version"):
        return None
    versioned = cast(VersionedLogger, logger)
    filesystem, root = fsspec.core.url_to_fs(str(versioned.root_dir))
    filesystem.makedirs(root, exist_ok=True)
    version = versioned._get_next_version()
    while True:
        try:
            if isinstance(filesystem, LocalFileSystem):
                os.mkdir(join(root, f"version_{version}"))  # fails if it exists, also against another process
            else:
                filesystem.makedirs(join(root, f"version_{version}"), exist_ok=False)
        except FileExistsError:
            version += 1
            continue
        versioned._version = version
        return join(root, f"version_{version}")


class DropUnusedRunFolder(pl.Callback):
    """A run that fails before its first training step (a bad value its module or data module refuses in setup) takes
    back the version folders it claimed, so no empty ``version_N`` (only a config in it) is left beside the user's
    runs and the corrected rerun takes the same number. A folder holding a checkpoint is never touched."""

    def __init__(self, folders: list[str]) -> None:
        self.folders = folders

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0:
            return
        for folder in (f for f in self.folders if is_local(f)):
            if not any(Path(folder).rglob("*.ckpt")):
                shutil.rmtree(folder, ignore_errors=True)


def run_id(trainer: pl.Trainer) -> str:
    """This run's name in its records: the W&B run id or the logger's ``version_N``; without a logger, the host and
    process."""
    if trainer.loggers:
        version = trainer.loggers[0].version
        return f"version_{version}" if isinstance(version, int) else str(version)
    return f"{socket.gethostname()}-{os.getpid()}"


def lock_run_folder(trainer: pl.Trainer) -> IO[str] | None:
    """Hold an exclusive lock on the folder of a run without a logger (``<default_root_dir>/checkpoints``, the same for
    every such run): a second one started there while this one runs is refused in one line instead of overwriting its
    checkpoints and genotype. Runs with a logger get a version folder of their own (``claim_version``). Returns the
    open lock file (the lock lasts until it is closed or the process ends); None where there is nothing to lock
    (a logger, or a remote folder, which has no locks)."""
    root = str(trainer.default_root_dir)
    if trainer.loggers or not is_local(root):
        return None
    return lock_folder(root, f"another run without a logger is writing to {root}", "give this run another "
                       "default_root_dir, or a logger, which gives each run a version folder")


def lock_folder(folder: str, busy: str, fix: str) -> IO[str]:
    """An exclusive lock on ``<folder>/.run.lock`` for as long as the returned file stays open; while another process
    holds it, a ConfigError ``busy (it holds ...): fix``."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ".run.lock")
    lock = open(path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(f"{busy} (it holds {path}): {fix}") from None
    return lock
