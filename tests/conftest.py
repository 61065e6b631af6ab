"""Shared by the tests: tiny CIFAR-10 and CIFAR-100 in their real on-disk format, an ImageFolder tree of JPEGs, an
interrupter for resume tests, and a count of the activations autograd keeps; under pytest-xdist (pyproject.toml runs
two workers), one torch thread per worker and the longest tests handed out first."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

LONG_FIRST = ("tests/test_typing.py::", "tests/networks/test_timm_models.py::", "tests/benchmark/test_runs.py::")
"""Tests that take long without being marked slow (mypy over the package, timm's model tests, the benchmark's runs on
planted tables), handed out first with the slow ones; a name that no longer exists here only loses its head start."""


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker, torch (and every process a test starts, which inherits OMP_NUM_THREADS) runs on one thread:
    two workers each running one thread per core would slow each other down several times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, the slow tests and LONG_FIRST first (otherwise in their order): ``--dist loadgroup`` hands
    the tests out one at a time in this order, so the long ones run side by side early instead of one of them
    running alone at the end. Every worker sorts the same way, as xdist requires."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None and not item.nodeid.startswith(LONG_FIRST))


TINY_CIFAR_PER_BATCH = 8
"""Images per pickled batch: 5 training batches (40 images) and one test batch."""


def _write_cifar_batch(path: Path, rng: np.random.Generator, count: int, offset: int) -> None:
    """One pickled batch as the python-version CIFAR-10 archive stores it: 3072-byte rows, R, G then B planes."""
    batch = {
        "batch_label": path.name,
        "labels": [(offset + i) % 10 for i in range(count)],
        "data": rng.integers(0, 256, size=(count, 3 * 32 * 32), dtype=np.uint8),
        "filenames": [f"image_{offset + i}.png" for i in range(count)],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def _register_md5s(reader: type[CIFAR10], folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the md5s of the fake files in torchvision's list (for one test), so its integrity check runs on them."""

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(reader, "train_list", [[name, md5(name)] for name, _ in reader.train_list])
    monkeypatch.setattr(reader, "test_list", [[name, md5(name)] for name, _ in reader.test_list])
    monkeypatch.setattr(reader, "meta", {**reader.meta, "md5": md5(reader.meta["filename"])})


@pytest.fixture
def tiny_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data_dir holding ``cifar-10-batches-py`` with 40 training and 8 test random images in the real format.

    torchvision verifies every file against the md5 of the real CIFAR-10; the fixture registers the md5s of its own
    files in torchvision's list (for this test only), so the real reading code, integrity check included, runs.
    Subprocesses do not see the patch: run multi-process tests on the digits instead.
    """
    folder = tmp_path / "cifar" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    for index, name in enumerate(names):
        _write_cifar_batch(folder / name, rng, TINY_CIFAR_PER_BATCH, offset=index * TINY_CIFAR_PER_BATCH)
    meta = {"label_names": [f"class_{i}" for i in range(10)], "num_cases_per_batch": TINY_CIFAR_PER_BATCH}
    (folder / CIFAR10.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    _register_md5s(CIFAR10, folder, monkeypatch)
    return folder.parent


TINY_CIFAR100_SIZES = {"train": 30, "test": 10}


@pytest.fixture
def tiny_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data_dir holding ``cifar-100-python`` in the real format (one pickled ``train`` and ``test`` file with fine
    and coarse labels, a ``meta`` file of label names) with 30 training and 10 test random images; image i of a part
    has fine label 99 - 3i and coarse label (99 - 3i) // 5. Its md5s are registered as in ``tiny_cifar10``."""
    folder = tmp_path / "cifar100" / CIFAR100.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in TINY_CIFAR100_SIZES.items():
        fine = [99 - 3 * i for i in range(count)]
        part = {
            "filenames": [f"{name}_{i}.png" for i in range(count)],
            "batch_label": f"{name} batch",
            "fine_labels": fine,
            "coarse_labels": [label // 5 for label in fine],
            "data": rng.integers(0, 256, size=(count, 3 * 32 * 32), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(part, protocol=2))
    meta = {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i}" for i in range(20)],
    }
    (folder / CIFAR100.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    _register_md5s(CIFAR100, folder, monkeypatch)
    return folder.parent


TINY_IMAGENET_CLASSES = ("n01440764", "n01443537", "n01484850")


@pytest.fixture
def tiny_imagefolder(tmp_path: Path) -> Path:
    """An ImageFolder tree ``train/<class>/*.JPEG`` (4 per class) and ``val/<class>/*.JPEG`` (2 per class) of 3
    classes; each image is 40x48 pixels of one colour, different for every image."""
    root = tmp_path / "imagenet"
    for part, count in (("train", 4), ("val", 2)):
        for class_index, name in enumerate(TINY_IMAGENET_CLASSES):
            folder = root / part / name
            folder.mkdir(parents=True)
            for image_index in range(count):
                colour = (40 + 80 * class_index, 200 - 30 * image_index, 90 + 20 * image_index)
                image = Image.new("RGB", (48, 40), colour)
                image.save(folder / f"{name}_{image_index}.JPEG", quality=95)
    return root


class StopAfterEpoch(pl.Callback):
    """Interrupt a run after ``epoch`` (as a crash or a preempted job would), leaving its last checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


@pytest.fixture
def stop_after_epoch() -> type[StopAfterEpoch]:
    """The interrupter class: ``stop_after_epoch(k)`` stops a fit after epoch k."""
    return StopAfterEpoch


def _saved_activation_bytes(forward: Callable[[], Any]) -> tuple[Any, int]:
    """``forward()``'s result and the bytes of the distinct storages autograd saved for its backward pass."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = forward()
    return out, sum(storages.values())


@pytest.fixture
def saved_activation_bytes() -> Callable[[Callable[[], Any]], tuple[Any, int]]:
    """``saved_activation_bytes(forward)``: ``forward()``'s result and the bytes autograd saved for its backward."""
    return _saved_activation_bytes


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Candidates of a black-box search score the share of nor_conv_3x3 edges of their NAS-Bench-201 cell, untrained
    (a planted best: the all-3x3 cell); returns the keys trained, in order."""
    from lightning_nas.strategies.candidates import CandidatePool

    trained: list[str] = []

    def train(self: Any, key: str, arch: Any, callbacks: Any = (), seed: int | None = None) -> tuple[None, dict]:
        trained.append(key)
        return None, {"key": key, "genotype": {"arch": arch.to_string()}, "curve": [], "epochs": 1, "seconds": 0.0,
                      "accuracy": arch.ops.count("nor_conv_3x3") / 6}

    monkeypatch.setattr(CandidatePool, "train", train)
    return trained
