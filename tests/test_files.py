import os
from pathlib import Path

import pytest

from lightning_nas.files import append_text, atomic_open, read_text, write_atomic


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    path = Path(write_atomic(tmp_path / "sub" / "state.json", "old"))
    write_atomic(path, b"new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(write_atomic(tmp_path / "state.json", "old"))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # the temporary is removed


def test_atomic_open_streams_into_the_file_on_success_only(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_open(path) as file:
            file.write(b"partial")
            raise RuntimeError("interrupted")
    assert not any(tmp_path.iterdir())
    with atomic_open(path) as file:
        file.write(b"whole")
    assert path.read_bytes() == b"whole"


def test_urls_go_through_fsspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    monkeypatch.chdir(tmp_path)
    memory = fsspec.filesystem("memory")
    try:
        assert write_atomic("memory://run/a/genotype.json", "{}") == "memory://run/a/genotype.json"
        append_text("memory://run/a/history.jsonl", "1\n")
        append_text("memory://run/a/history.jsonl", "2\n")
        assert read_text("memory://run/a/history.jsonl") == "1\n2\n" and read_text("memory://run/a/none") is None
        assert memory.cat("/run/a/genotype.json") == b"{}"
    finally:
        memory.rm("/run", recursive=True)
    assert not any(tmp_path.iterdir())
