"""Atomic file writes: whatever a user made (genotypes, search state, results, plots, checkpoints) is never left
half written."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file beside it, flushed to disk and renamed over ``path``
    when the block ends, removed if it raises. A reader or a crash sees the old file or the new one, never part of
    one (a rename within one folder is atomic; one across filesystems is not). The temporary name is per process, so
    processes writing the same file do not collide."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through ``atomic_open``."""
    with atomic_open(path) as file:
        file.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
