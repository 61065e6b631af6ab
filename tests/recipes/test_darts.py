import re
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_nas.genotypes import Genotype

TINY_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--model.C", "4", "--model.layers", "3"]


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"lightning_nas.recipes.{module}", "fit", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_digits_search_genotype_file_is_accepted_unchanged_by_the_train_recipe(tmp_path):
    search = run("darts", "--config", "recipes/darts_digits.yaml", "--trainer.default_root_dir", str(tmp_path / "search"),
                 *TINY_RUN)
    printed = re.search(r"written to (\S+)", search.stdout)
    assert printed, search.stdout[-2000:]
    genotype_file = Path(printed.group(1))
    assert genotype_file.is_file() and genotype_file.is_relative_to(tmp_path / "search")
    genotype = Genotype.load(genotype_file)
    assert genotype.describe() in search.stdout

    run("train", "--config", "recipes/train_digits.yaml", "--trainer.default_root_dir", str(tmp_path / "train"),
        "--model.genotype", str(genotype_file), "--trainer.logger", "false", *TINY_RUN)
    assert list((tmp_path / "train").rglob("*.ckpt"))


def test_reuse_example_runs(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("## Reuse the DARTS search space in your own LightningModule", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "darts_reuse"})
    output = capsys.readouterr().out
    assert output.count("), (") >= 7  # the one-cell architecture: 8 (op, input) edges
    assert "normal cell" in output and "reduce cell" in output
