"""The package type-checks: ``mypy lightning_nas`` with the [tool.mypy] settings of pyproject.toml finds no error."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_the_package() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extras")
    result = subprocess.run([sys.executable, "-m", "mypy", "lightning_nas"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"mypy lightning_nas failed:\n{result.stdout}{result.stderr}"
