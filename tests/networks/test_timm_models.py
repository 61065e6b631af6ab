"""timm's own tests/test_models.py, taken from the source distribution of the installed timm, run against every
model this package registers: the conventions checked move with timm (test_stacked_timm.py holds what is ours)."""

import importlib.metadata
import re
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
def timm_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The outcome lines (``PASSED test_models.py::...[1-nas_cifar]``, ...) of one run of timm's test_models.py over
    every model we register, by model. pip fetches the installed timm's sdist; skipped where it cannot."""
    version = importlib.metadata.version("timm")
    folder = tmp_path_factory.mktemp("timm-sdist")
    download = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               f"timm=={version}", "--dest", str(folder)], capture_output=True, text=True)
    if download.returncode != 0:
        pytest.skip(f"timm {version}'s source distribution is not available: {download.stderr.strip()[-300:]}")
    (archive,) = folder.glob("timm-*.tar.gz")
    with tarfile.open(archive) as sdist:
        sdist.extractall(folder, [member for member in sdist.getmembers() if "/tests/" in member.name], filter="data")
    models = registered_models()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "lightning_nas.networks", "-p", "no:cacheprovider",
         "-o", "addopts=", "-W", "ignore", "-k", " or ".join(models), "test_models.py"],
        cwd=folder / f"timm-{version}" / "tests", capture_output=True, text=True, timeout=1200,
    )
    outcomes = [line for line in result.stdout.splitlines() if line.startswith(("PASSED ", "FAILED ", "ERROR "))]
    return {model: [line for line in outcomes if re.search(rf"[\[-]{re.escape(model)}(\.\w+)?\]", line)]
            for model in models}


@pytest.mark.slow
@pytest.mark.xdist_group("timm_models")  # one worker runs timm's tests once for all of them
@pytest.mark.parametrize("model", registered_models())
def test_timms_model_tests_pass(timm_results: dict[str, list[str]], model: str) -> None:
    outcomes = timm_results[model]
    assert outcomes and all(line.startswith("PASSED ") for line in outcomes), "\n".join(outcomes)


def test_we_register_the_stacked_networks() -> None:
    assert {"nas_cifar", "nas_imagenet"} <= set(registered_models())
