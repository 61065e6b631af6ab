"""Checkpoints written atomically beside their target: a kill while saving leaves the previous checkpoint whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_nas.files import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's CheckpointIO with local files saved through ``lightning_nas.files.atomic_open``: streamed into a
    temporary file in the target's folder, fsynced, then renamed over the target. Lightning's own save goes through
    a temporary file that may lie on another filesystem ($TMPDIR), where the final move is a copy that a kill can cut
    short, leaving an empty or partial ``last.ckpt``; and it holds the whole checkpoint in memory first.

    Every recipe uses it unless the trainer is given another CheckpointIO; elsewhere pass
    ``Trainer(plugins=[AtomicCheckpointIO()])``. Remote paths (``s3://``, ...) keep Lightning's save.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        filesystem, local_path = fsspec.core.url_to_fs(str(path))
        if storage_options is not None or not isinstance(filesystem, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_open(local_path) as file:
            torch.save(checkpoint, file)
