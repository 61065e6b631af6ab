import os
from pathlib import Path

import pytest

from lightning_nas.files import write_atomic


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "sub" / "state.json", "old")
    write_atomic(path, b"new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_atomic(tmp_path / "state.json", "old")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
