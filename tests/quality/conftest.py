"""Helpers shared by the report's tests: a tiny PNAS search recipe and a report config around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml


def write_pnas_report(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """A tiny PNAS digits search recipe (B=2, 2 ops: 10 one-block cells, one 4-channel epoch of 2 batches) and a
    report config for it with the given PNAS ``sections`` (e.g. ``predictor_eval={...}``); returns the report's."""
    search = {
        "B": 2, "K": 2, "N": 1, "F": 4, "epochs": 1, "limit_train_batches": 2, "ops": ["identity", "max_pool_3x3"],
        "predictor_epochs": 5, "accelerator": "cpu", "num_threads": 1,
        "data": {"class_path": "lightning_nas.data.DigitsDataModule",
                 "init_args": {"mode": "eval", "val_split": 100, "batch_size": 64}},
    }
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    report = {
        "strategy": "pnas", "search_config": str(tmp_path / "search.yaml"),
        "space": {"name": "pnas", "nodes": 2, "ops": ["identity", "max_pool_3x3"]},
        "output_dir": str(tmp_path / "report"), "retrain": {"N": 1, "F": 4, "epochs": 1, "limit_train_batches": 2},
        **sections,
        "data": {"class_path": "lightning_nas.data.DigitsDataModule", "init_args": {"mode": "eval", "batch_size": 64}},
    }
    (tmp_path / "report.yaml").write_text(yaml.safe_dump(report))
    return tmp_path / "report.yaml"


@pytest.fixture
def pnas_report() -> Callable[..., Path]:
    return write_pnas_report
