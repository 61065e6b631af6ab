from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from lightning_nas.data import DigitsDataModule


def test_every_digit_is_read_once_normalised() -> None:
    data = DigitsDataModule(batch_size=300)
    assert (data.num_classes, data.in_chans, data.input_size) == (10, 1, (1, 8, 8))
    assert len(data.split("train")) == 1500 and len(data.split("test")) == 297
    digits = load_digits()
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (297, 1, 8, 8)
    expected = (torch.tensor(digits.images[1500:], dtype=torch.float32).unsqueeze(1) / 16 - 0.3) / 0.4
    torch.testing.assert_close(images, expected)
    assert labels.tolist() == digits.target[1500:].tolist()


def test_declared_statistics_normalise_the_training_images() -> None:
    data = DigitsDataModule()
    raw = data.split("train").dataset.images
    assert abs(raw.mean() - data.mean[0]) < 0.01 and abs(raw.std() - data.std[0]) < 0.03


def test_training_images_are_shifted_by_at_most_one_pixel() -> None:
    data = DigitsDataModule()
    dataset = data.split("train").dataset
    plain = torch.nn.functional.pad((dataset.images[0] - 0.3) / 0.4, (1, 1, 1, 1), value=-0.3 / 0.4)
    shifted = [plain[:, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
    torch.manual_seed(0)
    draws = [dataset[0][0] for _ in range(20)]
    assert all(any(torch.equal(image, candidate) for candidate in shifted) for image in draws)
    assert len({tuple(image.flatten().tolist()) for image in draws}) > 1
