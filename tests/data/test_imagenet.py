from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from lightning_nas.data import ImageNetDataModule


def test_classes_are_read_from_the_folders_at_construction(tiny_imagefolder: Path) -> None:
    data = ImageNetDataModule(tiny_imagefolder, image_size=32)
    assert (data.num_classes, data.in_chans, data.input_size) == (3, 3, (3, 32, 32))
    assert data.classes == sorted(path.name for path in (tiny_imagefolder / "train").iterdir())
    assert len(data.split("train")) == 12 and len(data.split("test")) == 6


def test_evaluation_images_are_resized_centre_crops_normalised_with_imagenet_statistics(tiny_imagefolder: Path) -> None:
    data = ImageNetDataModule(tiny_imagefolder, image_size=32, batch_size=6)
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (6, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
    for image, label, (path, target) in zip(images, labels, data.split("test").samples):
        assert label == target == data.classes.index(Path(path).parent.name)
        colour = torch.tensor(Image.open(path).convert("RGB").getpixel((24, 20)), dtype=torch.float32) / 255
        torch.testing.assert_close(image, ((colour.view(3, 1, 1) - mean) / std).expand(3, 32, 32), atol=0.03, rtol=0)


def test_training_images_are_augmented(tiny_imagefolder: Path) -> None:
    data = ImageNetDataModule(tiny_imagefolder, image_size=32, batch_size=4)
    images, _ = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32)
    torch.manual_seed(0)
    draws = torch.stack([data.split("train").dataset[0][0] for _ in range(4)])
    assert (draws - draws[0]).abs().amax() > 0.1  # colour jitter: the same image comes out different each time


def test_search_mode_splits_the_training_folder(tiny_imagefolder: Path) -> None:
    data = ImageNetDataModule(tiny_imagefolder, image_size=32, mode="search", val_split=2, batch_size=2)
    assert [len(data.split(name)) for name in ("heldout", "weights", "arch")] == [2, 5, 5]
    batch = next(iter(data.train_dataloader()))[0]
    assert set(batch) == {"weights", "arch"} and batch["arch"][0].shape == (2, 3, 32, 32)


@pytest.mark.parametrize("missing", ["train", "val"])
def test_missing_folders_name_the_expected_layout(tiny_imagefolder: Path, missing: str) -> None:
    shutil.rmtree(tiny_imagefolder / missing)
    with pytest.raises(FileNotFoundError) as error:
        ImageNetDataModule(tiny_imagefolder)
    message = str(error.value)
    assert str((tiny_imagefolder / missing).resolve()) in message and "{train,val}/<class>/" in message
    assert "\n" not in message


def test_train_and_val_must_hold_the_same_classes(tiny_imagefolder: Path) -> None:
    (tiny_imagefolder / "val" / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999"):
        ImageNetDataModule(tiny_imagefolder)

