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
from lightning_nas.networks.stacked import CIFAR_MEAN, CIFAR_STD

MEAN = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR_STD).view(3, 1, 1)


def raw_batch(data_dir: Path, name: str) -> tuple[torch.Tensor, list[int]]:
    """The uint8 images, as (N, 3, 32, 32), and the labels of one pickled batch, read without torchvision."""
    batch = pickle.loads((data_dir / "cifar-10-batches-py" / name).read_bytes())
    return torch.from_numpy(np.asarray(batch["data"])).view(-1, 3, 32, 32), batch["labels"]


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


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

