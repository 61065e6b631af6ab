"""Run outputs through fsspec, written atomically: whatever a user made (genotypes, search state, results, plots,
checkpoints) is never left half written, and a run under ``default_root_dir: s3://...`` or ``memory://...`` puts
all of it there, as Lightning does with its checkpoints.

Paths are strings (or ``os.PathLike``) here: ``pathlib.Path`` would fold ``memory://runs`` into ``memory:/runs``."""

from __future__ import annotations

import contextlib
import glob
import os
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem


def join(folder: str | os.PathLike, *names: str) -> str:
    """``folder/name/...`` for local paths and URLs alike."""
    return "/".join([str(folder).rstrip("/"), *names])


def is_local(path: str | os.PathLike) -> bool:
    return isinstance(fsspec.core.url_to_fs(str(path))[0], LocalFileSystem)


def absolute(path: str | os.PathLike) -> str:
    """A local path made absolute (a URL as it is): what a printed command names, so it works from any folder."""
    return os.path.abspath(path) if is_local(path) else str(path)


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through. Locally: a temporary file beside it, flushed to disk and renamed over
    ``path`` when the block ends, removed if it raises; a reader or a crash sees the old file or the new one, never
    part of one (a rename within one folder is atomic; one across filesystems is not). The temporary name is per
    process, so processes writing the same file do not collide. Elsewhere the filesystem's own write, which object
    stores commit whole when the file closes."""
    filesystem, target = fsspec.core.url_to_fs(str(path))
    parent, name = target.rsplit("/", 1)
    filesystem.makedirs(parent, exist_ok=True)
    if not isinstance(filesystem, LocalFileSystem):
        with filesystem.open(target, "wb") as remote:
            yield remote
        return
    remove_stale_temporaries(parent, name)
    temporary = f"{parent}/.{name}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def remove_stale_temporaries(folder: str, name: str) -> None:
    """Delete the temporaries of ``name`` that processes killed while writing it left behind (their pid has ended);
    those of live processes stay, they may be writing now."""
    for temporary in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        pid = temporary.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another writer removed it first
                os.unlink(temporary)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def write_atomic(path: str | os.PathLike, data: str | bytes) -> str:
    """Write ``data`` to ``path`` through ``atomic_open``; return the path."""
    with atomic_open(path) as file:
        file.write(data.encode() if isinstance(data, str) else data)
    return str(path)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` (created with its folder if missing), e.g. one JSON line of a history."""
    filesystem, target = fsspec.core.url_to_fs(str(path))
    filesystem.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    with filesystem.open(target, "ab") as file:
        file.write(text.encode())


def read_text(path: str | os.PathLike) -> str | None:
    """The text of ``path``, or None if it does not exist."""
    filesystem, target = fsspec.core.url_to_fs(str(path))
    if not filesystem.isfile(target):
        return None
    with filesystem.open(target, "rb") as file:
        return file.read().decode()
