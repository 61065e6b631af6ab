"""``import lightning_nas`` is cheap: torch, timm (which pulls in torchvision and wandb) and matplotlib load on use."""

import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "timm", "torchvision", "wandb", "matplotlib", "lightning")


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_import_loads_no_heavy_package_and_takes_under_three_seconds() -> None:
    start = time.perf_counter()
    loaded = _run(f"import sys, lightning_nas; print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    assert time.perf_counter() - start < 3.0
    assert loaded == "[]"


def test_package_names_load_on_first_access() -> None:
    import lightning_nas

    genotype = lightning_nas.resolve_genotype("DARTS_V2")
    assert isinstance(genotype, lightning_nas.Genotype) and genotype.normal[0] == ("sep_conv_3x3", 0)
    assert lightning_nas.published_genotypes()["DARTS_V2"] == genotype
    with pytest.raises(AttributeError, match="has no attribute 'Genotypes'"):
        lightning_nas.Genotypes
