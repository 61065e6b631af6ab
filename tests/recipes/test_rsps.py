"""The RSPS recipe: the shipped NAS-Bench-201 config builds its search; a tiny search on digits prints and writes its
cell."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lightning_nas.recipes.rsps import main
from lightning_nas.spaces.nb201 import NB201Architecture

ROOT = Path(__file__).resolve().parents[2]


def test_fashion_mnist_config_builds_the_nb201_search(tmp_path: Path) -> None:
    cli = main(["--config", str(ROOT / "recipes" / "rsps_nb201_fmnist.yaml"), "--trainer.default_root_dir",
                str(tmp_path)], run=False)
    assert cli.model.hparams.C == 8 and cli.model.hparams.in_chans == 1 and cli.model.hparams.eval_samples == 100
    assert cli.datamodule.mode == "search" and cli.datamodule.val_split == 2000


def test_tiny_digits_search_writes_and_prints_its_cell(tmp_path: Path, capsys) -> None:
    config = {"model": {"space": "nb201", "C": 2, "layers": 3, "eval_samples": 3, "eval_batches": 1},
              "data": {"class_path": "lightning_nas.data.DigitsDataModule",
                       "init_args": {"mode": "search", "val_split": 50, "batch_size": 16}},
              "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 0, "accelerator": "cpu",
                          "enable_progress_bar": False, "enable_model_summary": False}}
    (tmp_path / "tiny.yaml").write_text(json.dumps(config))  # JSON is YAML
    cli = main(["fit", "--config", str(tmp_path / "tiny.yaml"), "--trainer.default_root_dir", str(tmp_path)])
    printed = re.search(r"written to (\S+)", capsys.readouterr().out)
    assert printed and Path(printed.group(1)).is_relative_to(tmp_path)
    assert NB201Architecture.from_json(Path(printed.group(1)).read_text()) == cli.model.genotype()
