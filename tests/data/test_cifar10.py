from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar

from lightning_nas.data import CIFAR10DataModule, Cutout
from lightning_nas.data.cifar10 import CIFAR100_MEAN, CIFAR100_STD
from lightning_nas.errors import ConfigError
from lightning_nas.data.cifar10 import CIFAR_MEAN, CIFAR_STD
from lightning_nas.recipes.cli import run_recipe
from lightning_nas.strategies.final_training import FinalTraining

MEAN = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR_STD).view(3, 1, 1)


def raw_batch(data_dir: Path, name: str, folder: str = "cifar-10-batches-py") -> tuple[torch.Tensor, list[int]]:
    """The uint8 images, as (N, 3, 32, 32), and the (fine) labels of one pickled batch, read without torchvision."""
    batch = pickle.loads((data_dir / folder / name).read_bytes())
    labels = batch["labels"] if "labels" in batch else batch["fine_labels"]
    return torch.from_numpy(np.asarray(batch["data"])).view(-1, 3, 32, 32), labels


def normalise(images: torch.Tensor, mean: torch.Tensor = MEAN, std: torch.Tensor = STD) -> torch.Tensor:
    return (images.float() / 255 - mean) / std


def test_eval_mode_reads_every_image_normalised(tiny_cifar10: Path) -> None:
    data = CIFAR10DataModule(tiny_cifar10, batch_size=4)
    assert (data.num_classes, data.in_chans, data.input_size) == (10, 3, (3, 32, 32))
    assert (data.mean, data.std) == (CIFAR_MEAN, CIFAR_STD)
    assert len(data.split("train")) == 40 and len(data.split("test")) == 8
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    raw, raw_labels = raw_batch(tiny_cifar10, "test_batch")
    torch.testing.assert_close(images, normalise(raw[:4]))
    assert labels.tolist() == raw_labels[:4]


def test_search_mode_halves_the_training_images(tiny_cifar10: Path) -> None:
    data = CIFAR10DataModule(tiny_cifar10, mode="search", val_split=10, batch_size=5)
    assert [len(data.split(name)) for name in ("heldout", "weights", "arch")] == [10, 15, 15]
    batch = next(iter(data.train_dataloader()))[0]
    assert set(batch) == {"weights", "arch"}
    assert all(x.shape == (5, 3, 32, 32) for x, _ in batch.values())


def test_training_images_are_padded_crops_or_their_mirror_images(tiny_cifar10: Path) -> None:
    data = CIFAR10DataModule(tiny_cifar10)
    first_image = raw_batch(tiny_cifar10, "data_batch_1")[0][0].float()
    padded = F.pad(first_image, (4, 4, 4, 4))  # with black pixels, as RandomCrop(padding=4) pads
    candidates = {
        (dy, dx, flip): normalise(crop.flip(-1) if flip else crop)
        for dy in range(9)
        for dx in range(9)
        for flip in (False, True)
        for crop in [padded[:, dy : dy + 32, dx : dx + 32]]
    }
    torch.manual_seed(0)
    drawn = set()
    for _ in range(10):
        image = data.split("train").dataset[0][0]
        matches = [key for key, candidate in candidates.items() if torch.allclose(image, candidate, atol=1e-5)]
        assert len(matches) == 1
        drawn.add(matches[0])
    assert len(drawn) > 1


def test_cutout_zeroes_a_square_clipped_at_the_borders() -> None:
    torch.manual_seed(0)
    sides = []
    for _ in range(200):
        zeroed = Cutout(16)(torch.ones(3, 32, 32)) == 0
        assert (zeroed == zeroed[0]).all()  # the same square in every channel
        rows, cols = zeroed[0].any(1).nonzero().flatten(), zeroed[0].any(0).nonzero().flatten()
        assert zeroed[0].sum() == len(rows) * len(cols)  # a rectangle...
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()  # ...of adjacent rows and columns
        sides += [len(rows), len(cols)]
    assert min(sides) >= 8 and max(sides) == 16  # centred on a pixel: at least half of each side stays inside


def test_cutout_applies_after_normalisation(tiny_cifar10: Path) -> None:
    image = CIFAR10DataModule(tiny_cifar10, cutout=16).split("train").dataset[0][0]
    zero_pixels = (image == 0).all(0).sum().item()
    assert 8 * 8 <= zero_pixels <= 16 * 16  # random pixels never normalise to exactly 0 (255 * mean is no integer)
    assert (CIFAR10DataModule(tiny_cifar10).split("train").dataset[0][0] == 0).sum() == 0


def test_missing_files_name_the_folder_and_the_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10DataModule(tmp_path).setup()
    message = str(error.value)
    assert str((tmp_path / "cifar-10-batches-py").resolve()) in message
    assert "cifar-10-python.tar.gz" in message and "download=True" in message and "\n" not in message


def test_offline_download_fails_with_the_same_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match="download failed") as error:
        CIFAR10DataModule(tmp_path, download=True).prepare_data()
    assert str((tmp_path / "cifar-10-batches-py").resolve()) in str(error.value) and "\n" not in str(error.value)


def test_corrupt_files_fail_the_md5_check(tiny_cifar10: Path) -> None:
    test_batch = tiny_cifar10 / "cifar-10-batches-py" / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:-1])
    with pytest.raises(ValueError, match="md5"):
        CIFAR10DataModule(tiny_cifar10).setup()



def test_cifar100_reads_the_fine_labels_with_its_own_statistics(tiny_cifar100: Path) -> None:
    data = CIFAR10DataModule(tiny_cifar100, dataset="cifar100", batch_size=10)
    assert (data.num_classes, data.input_size) == (100, (3, 32, 32))
    assert (data.mean, data.std) == (CIFAR100_MEAN, CIFAR100_STD)
    assert CIFAR10DataModule(tiny_cifar100).num_classes == 10  # per instance, not per class
    assert len(data.split("train")) == 30 and len(data.split("test")) == 10
    images, labels = next(iter(data.test_dataloader()))
    raw, raw_labels = raw_batch(tiny_cifar100, "test", folder="cifar-100-python")
    mean, std = torch.tensor(CIFAR100_MEAN).view(3, 1, 1), torch.tensor(CIFAR100_STD).view(3, 1, 1)
    torch.testing.assert_close(images, normalise(raw, mean, std))
    assert labels.tolist() == raw_labels == list(range(99, 70, -3))


def test_cifar100_search_mode_halves_the_training_images(tiny_cifar100: Path) -> None:
    data = CIFAR10DataModule(tiny_cifar100, dataset="cifar100", mode="search", val_split=6, batch_size=4)
    heldout, weights, arch = (data.split(name) for name in ("heldout", "weights", "arch"))
    assert [len(heldout), len(weights), len(arch)] == [6, 12, 12]
    assert sorted(heldout.indices + weights.indices + arch.indices) == list(range(30))


def test_the_cli_gives_the_model_100_classes(tiny_cifar100: Path) -> None:
    cli = run_recipe(FinalTraining, ["--model.C", "4", "--model.layers", "3", "--data", "CIFAR10DataModule",
                                     "--data.data_dir", str(tiny_cifar100), "--data.dataset", "cifar100"], run=False)
    assert cli.datamodule.num_classes == 100
    assert cli.model.network.get_classifier().out_features == 100
    assert cli.model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_missing_cifar100_names_its_folder_and_archive(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10DataModule(tmp_path, dataset="cifar100").setup()
    message = str(error.value)
    assert message.startswith("CIFAR-100 not found") and "\n" not in message
    assert str((tmp_path / "cifar-100-python").resolve()) in message and "cifar-100-python.tar.gz" in message
    assert "(train, test, meta)" in message


def test_corrupt_cifar100_fails_the_md5_check(tiny_cifar100: Path) -> None:
    train = tiny_cifar100 / "cifar-100-python" / "train"
    train.write_bytes(train.read_bytes()[:-1])
    with pytest.raises(ConfigError, match="CIFAR-100 files .* md5 .*cifar-100-python.tar.gz"):
        CIFAR10DataModule(tiny_cifar100, dataset="cifar100").setup()


def test_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cifar10, cifar100"):
        CIFAR10DataModule(tmp_path, dataset="cifar1000")
