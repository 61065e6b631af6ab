"""CIFAR-10 and CIFAR-100 (50,000 training and 10,000 test 32x32 colour images, 10 or 100 classes) with the DARTS
augmentation; NAS papers report both.

Training images get a 4-pixel padded random crop, a horizontal flip, normalisation and, optionally, cutout.
The files are torchvision's: the python-version batches in ``<data_dir>/cifar-10-batches-py`` or
``<data_dir>/cifar-100-python``.
"""

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms import v2

from lightning_nas.arguments import NonNegativeInt, PositiveInt
from lightning_nas.data.base import Mode, NASDataModule, with_transform
from lightning_nas.errors import ConfigError, check

CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)

DATASETS: dict[str, tuple[str, type[CIFAR10], int, tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ("CIFAR-10", CIFAR10, 10, CIFAR_MEAN, CIFAR_STD),
    "cifar100": ("CIFAR-100", CIFAR100, 100, CIFAR100_MEAN, CIFAR100_STD),
}
"""title, torchvision reader, number of classes, per-channel mean and std of the training images"""


class Cutout(torch.nn.Module):
    """Cutout as in DARTS: zero a ``length`` x ``length`` square centred on a uniformly random pixel, clipped at the
    borders (so squares near an edge are smaller), applied to the normalised image tensor."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        y, x = torch.randint(height, ()).item(), torch.randint(width, ()).item()
        top, left = max(0, y - self.length // 2), max(0, x - self.length // 2)
        bottom, right = min(height, y + self.length // 2), min(width, x + self.length // 2)
        image = image.clone()
        image[..., top:bottom, left:right] = 0
        return image


class CIFAR10DataModule(NASDataModule):
    """CIFAR-10 or CIFAR-100 (``dataset``) in the eval mode (50k train / 10k test) and the search mode (two seeded
    halves of the 50k).

    ``cutout`` is the side of the cutout square (16 in DARTS, ENAS and PNAS final training; 0 turns it off).
    ``download`` fetches the archive into ``data_dir`` in ``prepare_data`` (once per node) when the files are missing.
    """

    input_size = (3, 32, 32)

    def __init__(
        self,
        data_dir: str | Path = "data",
        dataset: Literal["cifar10", "cifar100"] = "cifar10",
        download: bool = False,
        cutout: NonNegativeInt = 0,
        mode: Mode = "eval",
        batch_size: PositiveInt = 96,
        val_split: NonNegativeInt = 0,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__(mode, batch_size, val_split, seed, num_workers, pin_memory, persistent_workers)
        check(dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        self.title, self.reader, self.num_classes, self.mean, self.std = DATASETS[dataset]
        self.data_dir = Path(data_dir)
        self.download = download
        self.cutout = cutout
        self._images: dict[bool, CIFAR10] = {}

    @property
    def folder(self) -> Path:
        return self.data_dir / self.reader.base_folder

    @property
    def file_names(self) -> list[str]:
        """The pickled batches and the metadata file of the python-version archive."""
        return [name for name, _ in self.reader.train_list + self.reader.test_list] + [self.reader.meta["filename"]]

    def _missing_files_message(self) -> str:
        return (
            f"{self.title} not found: expected the python-version batches ({', '.join(self.file_names)}) in "
            f"{self.folder.resolve()}; download {self.reader.filename} from {self.reader.url} and extract it into "
            f"{self.data_dir.resolve()}, or pass download=True (--data.download true) on a machine with internet"
        )

    def _has_files(self) -> bool:
        return all((self.folder / name).is_file() for name in self.file_names)

    def prepare_data(self) -> None:
        if self.download and not self._has_files():
            try:
                self.reader(self.data_dir, download=True)
            except (OSError, RuntimeError) as error:  # offline, refused, or a corrupt archive
                raise FileNotFoundError(f"{self._missing_files_message()} (download failed: {error})") from error

    def _load(self, train: bool) -> CIFAR10:
        """The raw images of one part, read once and shared by every transform."""
        if train not in self._images:
            if not self._has_files():
                raise FileNotFoundError(self._missing_files_message())
            try:
                self._images[train] = self.reader(self.data_dir, train=train)
            except RuntimeError:
                raise ConfigError(
                    f"{self.title} files in {self.folder.resolve()} failed torchvision's md5 check; delete the folder "
                    f"and download {self.reader.filename} again from {self.reader.url}"
                ) from None
        return self._images[train]

    def _transform(self, train: bool) -> v2.Compose:
        augment = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else []
        cutout = [Cutout(self.cutout)] if train and self.cutout else []
        to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose([*augment, *to_tensor, *cutout])

    def make_train_set(self, train: bool) -> Dataset:
        return with_transform(self._load(train=True), self._transform(train))

    def make_test_set(self) -> Dataset:
        return with_transform(self._load(train=False), self._transform(False))
