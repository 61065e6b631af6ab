"""Run folders: each run claims its own version folder, whatever runs start beside it."""

from __future__ import annotations

import threading
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lightning_nas.run_folder import claim_version, run_id


def test_concurrent_runs_never_share_a_version_folder(tmp_path: Path) -> None:
    (tmp_path / "search" / "version_0").mkdir(parents=True)  # an earlier run
    loggers = [CSVLogger(tmp_path, name="search") for _ in range(8)]
    start = threading.Barrier(len(loggers))

    def claim(logger: CSVLogger) -> None:
        assert logger._get_next_version() == 1  # what Lightning alone would give every one of them
        start.wait()
        claim_version(logger)

    threads = [threading.Thread(target=claim, args=(logger,)) for logger in loggers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(logger.version for logger in loggers) == list(range(1, 9))
    assert sorted(path.name for path in (tmp_path / "search").iterdir()) == [f"version_{i}" for i in range(9)]


def test_a_set_version_and_other_loggers_are_left_alone(tmp_path: Path) -> None:
    fixed = CSVLogger(tmp_path, version=7)
    claim_version(fixed)
    assert fixed.version == 7 and not (tmp_path / "lightning_logs").exists()
    claim_version(WandbLogger(save_dir=str(tmp_path), offline=True))  # W&B runs have their own ids
    assert not any(tmp_path.iterdir())


def test_run_id_names_the_version(tmp_path: Path) -> None:
    assert run_id(pl.Trainer(logger=CSVLogger(tmp_path, version=3), default_root_dir=tmp_path)) == "version_3"
    assert run_id(pl.Trainer(logger=CSVLogger(tmp_path, version="sweep-a"), default_root_dir=tmp_path)) == "sweep-a"
