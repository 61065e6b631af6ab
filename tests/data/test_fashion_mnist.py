"""Fashion-MNIST from the Debian package's real files, MNIST from a tiny fake in torchvision's layout."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.mnist

from lightning_nas.data import FashionMNISTDataModule
from lightning_nas.data.fashion_mnist import DATASETS, read_idx
from lightning_nas.errors import ConfigError
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.strategies.final_training import FinalTraining

PACKAGE = DATASETS["fashion_mnist"].package_folder
ROOT = Path(__file__).resolve().parents[2]
needs_package = pytest.mark.skipif(
    not (PACKAGE / "train-images-idx3-ubyte.gz").is_file(), reason="apt-get install dataset-fashion-mnist"
)


def read_real(name: str, header: int) -> np.ndarray:
    """The bytes after the idx header of one of the package's files, read without the module."""
    return np.frombuffer(gzip.decompress((PACKAGE / name).read_bytes()), np.uint8, offset=header)


@pytest.fixture(scope="module")
def fmnist() -> FashionMNISTDataModule:
    """The real Fashion-MNIST in eval mode with 5,000 held-out images, read once for the module."""
    data = FashionMNISTDataModule(val_split=5000, batch_size=500)
    data.setup()
    return data


@needs_package
def test_the_package_files_hold_all_of_fashion_mnist(fmnist: FashionMNISTDataModule) -> None:
    assert (fmnist.num_classes, fmnist.in_chans, fmnist.input_size) == (10, 1, (1, 28, 28))
    for part, count in (("train", 60_000), ("test", 10_000)):
        whole = fmnist.split("train").dataset if part == "train" else fmnist.split("test")  # train: under the Subset
        images, labels = whole.images, whole.labels
        assert images.shape == (count, 28, 28) and images.dtype == torch.uint8
        assert (images.min().item(), images.max().item()) == (0, 255)
        assert labels.dtype == torch.int64 and labels.bincount().tolist() == [count // 10] * 10
    counts = fmnist.split("train").dataset.images.flatten().bincount(minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    std = ((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()
    assert abs(mean - fmnist.mean[0]) < 1e-4 and abs(std - fmnist.std[0]) < 1e-4


@needs_package
def test_test_images_are_the_raw_pixels_normalised(fmnist: FashionMNISTDataModule) -> None:
    images, labels = next(iter(fmnist.test_dataloader()))
    raw = torch.from_numpy(read_real("t10k-images-idx3-ubyte.gz", 16)[: 500 * 784].copy()).view(500, 1, 28, 28)
    torch.testing.assert_close(images, (raw.float() / 255 - 0.2860) / 0.3530)
    assert labels.tolist() == read_real("t10k-labels-idx1-ubyte.gz", 8)[:500].tolist()
    assert labels[:3].tolist() == [9, 2, 1]  # ankle boot, pullover, trouser: the first test images


@needs_package
def test_held_out_images_are_validated_unaugmented(fmnist: FashionMNISTDataModule) -> None:
    heldout, train = fmnist.split("heldout"), fmnist.split("train")
    assert (len(heldout), len(train)) == (5000, 55_000)
    assert sorted(heldout.indices + train.indices) == list(range(60_000))
    assert fmnist.val_dataloader().dataset is heldout
    index = heldout.indices[0]
    raw = fmnist.split("train").dataset.images[index].float() / 255
    torch.testing.assert_close(heldout[0][0], ((raw - 0.2860) / 0.3530).unsqueeze(0))


@needs_package
def test_search_halves_are_disjoint_and_cover_the_rest() -> None:
    data = FashionMNISTDataModule(mode="search", val_split=10_000, seed=3, batch_size=8)
    heldout, weights, arch = (set(data.split(name).indices) for name in ("heldout", "weights", "arch"))
    assert (len(heldout), len(weights), len(arch)) == (10_000, 25_000, 25_000)
    assert not heldout & weights and not heldout & arch and not weights & arch
    assert heldout | weights | arch == set(range(60_000))
    batch = next(iter(data.train_dataloader()))[0]
    assert {name: x.shape for name, (x, _) in batch.items()} == {name: (8, 1, 28, 28) for name in ("weights", "arch")}


def crops(image: torch.Tensor, mean: float, std: float, mirrored: bool) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every 2-pixel padded 28x28 crop of a uint8 (28, 28) image, and its mirror image if ``mirrored``, normalised."""
    padded = F.pad(image.float() / 255, (2, 2, 2, 2)).unsqueeze(0)  # black padding, as RandomCrop pads uint8 images
    flips = (False, True) if mirrored else (False,)
    return {
        (dy, dx, flip): ((crop.flip(-1) if flip else crop) - mean) / std
        for dy in range(5)
        for dx in range(5)
        for flip in flips
        for crop in [padded[:, dy : dy + 28, dx : dx + 28]]
    }


def draws_match(dataset: torch.utils.data.Dataset, candidates: dict, count: int = 30) -> set:
    """The candidates that ``count`` draws of item 0 equal (each must equal exactly one)."""
    torch.manual_seed(0)
    drawn = set()
    for _ in range(count):
        image = dataset[0][0]
        matches = [key for key, candidate in candidates.items() if torch.allclose(image, candidate, atol=1e-5)]
        assert len(matches) == 1
        drawn.add(matches[0])
    return drawn


@needs_package
def test_training_images_are_padded_crops_or_their_mirror_images(fmnist: FashionMNISTDataModule) -> None:
    dataset = fmnist.split("train").dataset
    drawn = draws_match(dataset, crops(dataset.images[0], 0.2860, 0.3530, mirrored=True))
    assert len(drawn) > 5 and {flip for _, _, flip in drawn} == {False, True}


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes: magic 0x0000 08 <ndim>, then each dimension as a big-endian int32, then data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_idx_dataset(data_dir: Path, folder: str, sizes: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random images with labels i % 10, extracted in torchvision's layout ``<data_dir>/<folder>/raw``."""
    raw = data_dir / folder / "raw"
    raw.mkdir(parents=True)
    rng, parts = np.random.default_rng(0), {}
    for part, count in sizes.items():
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = np.arange(count, dtype=np.uint8) % 10
        write_idx(raw / f"{part}-images-idx3-ubyte", images)
        write_idx(raw / f"{part}-labels-idx1-ubyte", labels)
        parts[part] = images, labels
    return parts


def test_mnist_reads_torchvision_layout_and_is_never_mirrored(tmp_path: Path) -> None:
    parts = fake_idx_dataset(tmp_path, "MNIST", {"train": 20, "t10k": 6})
    data = FashionMNISTDataModule(dataset="mnist", data_dir=str(tmp_path), mode="search", val_split=4, batch_size=6)
    assert (data.mean, data.std, data.num_classes) == ((0.1307,), (0.3081,), 10)
    assert [len(data.split(name)) for name in ("heldout", "weights", "arch", "test")] == [4, 8, 8, 6]
    images, labels = next(iter(data.test_dataloader()))
    expected = (torch.from_numpy(parts["t10k"][0]).float().unsqueeze(1) / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(images, expected)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]
    dataset = data.split("weights").dataset
    drawn = draws_match(dataset, crops(torch.from_numpy(parts["train"][0][0]), 0.1307, 0.3081, mirrored=True))
    assert len(drawn) > 5 and {flip for _, _, flip in drawn} == {False}


def test_data_dir_comes_before_the_package(tmp_path: Path) -> None:
    fake_idx_dataset(tmp_path, "FashionMNIST", {"train": 10, "t10k": 3})
    data = FashionMNISTDataModule(data_dir=str(tmp_path))
    assert (len(data.split("train")), len(data.split("test"))) == (10, 3)


def gzip_folder(folder: Path) -> Path:
    """``folder`` with the extracted files of ``fake_idx_dataset`` replaced by their gzip originals."""
    for path in folder.iterdir():
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    return folder


def test_an_explicit_data_dir_is_used_with_gzip_files_or_refused_but_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_idx_dataset(tmp_path / "package", "FashionMNIST", {"train": 10, "t10k": 3})
    package = gzip_folder(tmp_path / "package" / "FashionMNIST" / "raw")  # as the Debian package installs them
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(DATASETS["fashion_mnist"],
                                                                       package_folder=package))
    fake_idx_dataset(tmp_path / "given", "FashionMNIST", {"train": 8, "t10k": 2})
    gzip_folder(tmp_path / "given" / "FashionMNIST" / "raw")
    assert len(FashionMNISTDataModule(data_dir=str(tmp_path / "given")).split("train")) == 8
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match="; or leave out --data.data_dir to read "):
        FashionMNISTDataModule(data_dir=str(empty)).setup()
    monkeypatch.chdir(tmp_path)  # no ./data: the package's files
    assert len(FashionMNISTDataModule().split("train")) == 10


def test_a_gzip_file_that_is_no_idx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + bytes(4)))  # idx of float32
    with pytest.raises(ConfigError, match="no idx file of unsigned bytes"):
        read_idx(path)
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1, 0, 0, 0, 3]) + bytes([7, 8, 9])))
    assert read_idx(path).tolist() == [7, 8, 9]


def test_a_truncated_idx_file_is_named(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    fake_idx_dataset(tmp_path, "FashionMNIST", {"train": 10, "t10k": 3})
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(ConfigError) as error:
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup()
    assert str(error.value) == (f"{images} is truncated: its header announces 7840 bytes of data (10 x 28 x 28), it "
                                "holds 984; download it again")
    packed = raw / "t10k-labels-idx1-ubyte.gz"
    packed.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1, 0, 0, 0, 3]) + bytes([7, 8, 9]))[:-6])
    with pytest.raises(ConfigError, match=f"^{packed} is a truncated or corrupt gzip file .*; download it again$"):
        read_idx(packed)


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data_dir, with the Debian package's folder moved to an empty folder too."""
    empty = tmp_path / "no-package"
    empty.mkdir()
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(DATASETS["fashion_mnist"], package_folder=empty))
    return tmp_path / "data"


def test_missing_files_name_the_three_ways_in_one_line(nowhere: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        FashionMNISTDataModule(data_dir=str(nowhere)).setup()
    message = str(error.value)
    assert message.startswith("Fashion-MNIST not found") and "\n" not in message
    assert str((nowhere / "FashionMNIST" / "raw").resolve()) in message and "--data.data_dir" in message
    assert "--data.download true" in message and "apt-get install dataset-fashion-mnist" in message


def test_missing_mnist_names_no_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        FashionMNISTDataModule(dataset="mnist", data_dir=str(tmp_path)).setup()
    message = str(error.value)
    assert message.startswith("MNIST not found") and "--data.download true" in message and "apt-get" not in message


def test_offline_download_fails_with_the_same_advice(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match="download failed: Error downloading") as error:
        FashionMNISTDataModule(data_dir=str(nowhere), download=True).prepare_data()
    message = str(error.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(ConfigError, match="fashion_mnist, mnist"):
        FashionMNISTDataModule(dataset="kmnist")


def test_the_recipe_links_one_channel_and_ten_classes() -> None:
    cli = run_recipe(FinalTraining, ["--config", str(ROOT / "recipes" / "train_fmnist.yaml")], run=False)
    assert isinstance(cli.datamodule, FashionMNISTDataModule)
    logits, aux_logits = cli.model.network.train().forward_with_aux(torch.zeros(2, 1, 28, 28))
    assert logits.shape == aux_logits.shape == (2, 10)  # the auxiliary head reads 7x7 maps
