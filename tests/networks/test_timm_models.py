"""timm's own tests/test_models.py, taken from the source distribution of the installed timm, run against every
model this package registers: the conventions checked move with timm (test_stacked_timm.py holds what is ours)."""

import importlib.metadata
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import timm

import lightning_nas.networks  # noqa: F401  (registers the timm models)


def registered_models() -> list[str]:
    """The timm models this package registers."""
    return [name for name in timm.list_models()
            if timm.models.model_entrypoint(name).__module__.startswith("lightning_nas.")]


@pytest.fixture(scope="session")
def timm_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests folder of the installed timm's source distribution (pip fetches it; skipped where it cannot)."""
    version = importlib.metadata.version("timm")
    folder = tmp_path_factory.mktemp("timm-sdist")
    download = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               f"timm=={version}", "--dest", str(folder)], capture_output=True, text=True)
    if download.returncode != 0:
        pytest.skip(f"timm {version}'s source distribution is not available: {download.stderr.strip()[-300:]}")
    (archive,) = folder.glob("timm-*.tar.gz")
    with tarfile.open(archive) as sdist:
        sdist.extractall(folder, [member for member in sdist.getmembers() if "/tests/" in member.name], filter="data")
    return folder / f"timm-{version}" / "tests"


@pytest.mark.slow
def test_timms_model_tests_pass_on_every_model_we_register(timm_tests: Path) -> None:
    models = registered_models()
    assert {"nas_cifar", "nas_imagenet"} <= set(models)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "lightning_nas.networks", "-p", "no:cacheprovider",
         "-o", "addopts=", "-W", "ignore", "-k", " or ".join(models), "test_models.py"],
        cwd=timm_tests, capture_output=True, text=True, timeout=1200,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0 and " passed" in summary and "failed" not in summary, result.stdout[-5000:]
