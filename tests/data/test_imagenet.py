from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from lightning_nas.data import ImageNetDataModule
from lightning_nas.errors import ConfigError


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
    with pytest.raises(ConfigError, match="n99999999"):
        ImageNetDataModule(tiny_imagefolder)



def corrupt(root: Path) -> list[str]:
    """Make three training images unreadable: truncated to half, empty, and garbage behind a JPEG marker."""
    classes = sorted(folder.name for folder in (root / "train").iterdir())
    paths = [root / "train" / name / f"{name}_{index}.JPEG" for name, index in zip(classes, (1, 2, 3))]
    truncated, empty, garbage = paths
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty.write_bytes(b"")
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 50)
    return sorted(map(str, paths))


def warned(records: list[warnings.WarningMessage], prefix: str) -> list[str]:
    return [str(record.message) for record in records if str(record.message).startswith(prefix)]


def test_unreadable_images_are_skipped_with_a_warning_each_and_a_count(tiny_imagefolder: Path) -> None:
    paths = corrupt(tiny_imagefolder)
    data = ImageNetDataModule(tiny_imagefolder, image_size=32, batch_size=4)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        batches = list(data.train_dataloader())
        data.teardown("fit")
    assert [len(labels) for _, labels in batches] == [4, 4, 4]  # every sample comes back, no traceback
    skipped = warned(records, "skipping unreadable image ")
    assert sorted(message.split(" ")[3].rstrip(":") for message in skipped) == paths
    reasons = sorted(message.split(": ", 1)[1] for message in skipped)
    assert reasons == ["Truncated File Read", "Truncated File Read", "not an image file"]
    assert warned(records, "skipped ") == ["skipped 3 unreadable images in train/"]


def test_verify_images_leaves_the_unreadable_ones_out_up_front(tiny_imagefolder: Path) -> None:
    paths = corrupt(tiny_imagefolder)
    data = ImageNetDataModule(tiny_imagefolder, image_size=32, batch_size=3, verify_images=True)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        data.setup("fit")
    assert sorted(message.removeprefix("leaving out unreadable image ") for message in
                  warned(records, "leaving out ")) == paths
    assert warned(records, "left out ") == ["left out 3 unreadable of 12 images in train/"]
    assert len(data.split("train")) == 9
    assert str(tiny_imagefolder / "train" / "n01440764" / "n01440764_0.JPEG") in [
        path for path, _ in data.split("train").dataset.samples]
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        assert sum(len(labels) for _, labels in data.train_dataloader()) == 9
    assert not warned(records, "skipping ")
