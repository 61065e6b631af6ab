"""Fashion-MNIST (60,000 training and 10,000 test 28x28 grey images of clothes, 10 classes) and MNIST (the same
format, handwritten digits) through one data module.

Where the files come from: torchvision's layout under ``data_dir`` (the idx files, extracted or as the original
gzip files, in ``<data_dir>/FashionMNIST/raw`` or ``<data_dir>/MNIST/raw``, as ``download=True`` leaves them). With
no ``data_dir`` given, ``data`` first, then, for Fashion-MNIST, the gzip files that the Debian package
``dataset-fashion-mnist`` installs in /usr/share/datasets/fashion-mnist, read in place; a ``data_dir`` given is the
only place looked in, never silently replaced. The images stay one uint8 tensor; each item is cropped, flipped and
normalised as a tensor, without the PIL image per item that torchvision's dataset classes make (150 instead of
225 µs an item on 2 CPU cores).
"""

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, cast

import torch
from torch.utils.data import Dataset
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.transforms import v2

from lightning_nas.arguments import NonNegativeInt, PositiveInt
from lightning_nas.data.base import Mode, NASDataModule
from lightning_nas.errors import ConfigError, check


@dataclass(frozen=True)
class IdxDataset:
    """One dataset in the MNIST idx format: its torchvision reader, statistics and where a system package puts it."""

    title: str
    reader: type[MNIST]
    mean: float
    std: float
    mirror_symmetric: bool
    """Whether a horizontal flip keeps the class (a shirt stays a shirt; a mirrored digit is no digit)."""
    package: str | None = None
    package_folder: Path | None = None

    @property
    def file_names(self) -> list[str]:
        """The four original gzip files: train and t10k images and labels."""
        return [name for name, _ in self.reader.resources]


DATASETS = {
    "fashion_mnist": IdxDataset(
        "Fashion-MNIST", FashionMNIST, mean=0.2860, std=0.3530, mirror_symmetric=True,
        package="dataset-fashion-mnist", package_folder=Path("/usr/share/datasets/fashion-mnist"),
    ),
    "mnist": IdxDataset("MNIST", MNIST, mean=0.1307, std=0.3081, mirror_symmetric=False),
}


def read_idx(path: Path) -> torch.Tensor:
    """An idx file of unsigned bytes (idx3 images, idx1 labels), extracted or gzip-compressed (``.gz``), as a uint8
    tensor of its shape. Read here, not by torchvision's readers: they take only extracted files, which a read-only
    package folder cannot hold, and end on a truncated one with a bare shape error; here that is a ConfigError naming
    the file."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ConfigError(f"{path} is a truncated or corrupt gzip file ({error}); download it again") from None
    if data[:3] != b"\x00\x00\x08":
        raise ConfigError(f"{path} is no idx file of unsigned bytes (header {data[:4].hex()})")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]
    offset, size = 4 + 4 * len(shape), math.prod(shape)
    if len(data) != offset + size:
        raise ConfigError(f"{path} is truncated: its header announces {size} bytes of data "
                          f"({' x '.join(map(str, shape))}), it holds {len(data) - offset}; download it again")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=offset).view(shape)


class GreyImages(Dataset):
    """uint8 images (N, H, W) and their labels; item i is ``transform`` of image i as a (1, H, W) tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index].unsqueeze(0)), int(self.labels[index])


class FashionMNISTDataModule(NASDataModule):
    """Fashion-MNIST or MNIST (``dataset``) in the eval mode (60k train / 10k test) and the search mode (two seeded
    halves of the 60k).

    Training images get a 2-pixel padded random crop and, for Fashion-MNIST only, a horizontal flip.
    ``data_dir`` (default ``data``) holds torchvision's layout; ``download`` fetches the files there in
    ``prepare_data`` when they are found nowhere.
    """

    input_size = (1, 28, 28)
    num_classes = 10

    def __init__(
        self,
        dataset: Literal["fashion_mnist", "mnist"] = "fashion_mnist",
        data_dir: str | Path | None = None,
        download: bool = False,
        mode: Mode = "eval",
        batch_size: PositiveInt = 64,
        val_split: NonNegativeInt = 0,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__(mode, batch_size, val_split, seed, num_workers, pin_memory, persistent_workers)
        check(dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        self.spec = DATASETS[dataset]
        self.mean, self.std = (self.spec.mean,), (self.spec.std,)
        self.data_dir = Path(data_dir if data_dir is not None else "data")
        self.folders = [self.folder]
        """Where the files are looked for, in order: the system package's folder only when no data_dir is given."""
        if data_dir is None and self.spec.package_folder is not None:
            self.folders.append(self.spec.package_folder)
        self.download = download
        self._images: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def folder(self) -> Path:
        """torchvision's raw folder under ``data_dir``."""
        return self.data_dir / self.spec.reader.__name__ / "raw"

    def _files(self) -> dict[str, Path] | None:
        """The four files by original name (``train-images-idx3-ubyte.gz``, ...), each extracted or gzip-compressed,
        from the first of ``folders`` holding them all; None when none does."""
        for folder in self.folders:
            found = {name: next((path for path in (folder / name.removesuffix(".gz"), folder / name) if path.is_file()),
                                None) for name in self.spec.file_names}
            if all(found.values()):
                return cast(dict[str, Path], found)
        return None

    def _missing_files_message(self) -> str:
        ways = [
            f"put the idx files ({', '.join(name.removesuffix('.gz') for name in self.spec.file_names)}, extracted "
            f"or .gz) in {self.folder.resolve()} (torchvision's layout under --data.data_dir)",
            "pass --data.download true on a machine with internet",
        ]
        if self.spec.package and len(self.folders) > 1:
            ways.append(f"on Debian run apt-get install {self.spec.package} (read from {self.spec.package_folder})")
        elif self.spec.package:
            ways.append(f"leave out --data.data_dir to read {self.spec.package_folder} (apt-get install "
                        f"{self.spec.package})")
        return f"{self.spec.title} not found: {'; or '.join(ways)}"

    def prepare_data(self) -> None:
        if self.download and self._files() is None:
            try:
                self.spec.reader(self.data_dir, download=True)
            except (OSError, RuntimeError) as error:  # offline, refused, or a corrupt archive
                reason = " ".join(str(error).split())  # torchvision lists every mirror tried, one a line
                raise FileNotFoundError(f"{self._missing_files_message()} (download failed: {reason})") from error

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images (N, 28, 28) and int64 labels of one part, read once and shared by every transform."""
        if train not in self._images:
            files = self._files()
            if files is None:
                raise FileNotFoundError(self._missing_files_message())
            part = "train" if train else "t10k"
            images = read_idx(files[f"{part}-images-idx3-ubyte.gz"])
            self._images[train] = images, read_idx(files[f"{part}-labels-idx1-ubyte.gz"]).long()
        return self._images[train]

    def _transform(self, train: bool) -> v2.Compose:
        flip = [v2.RandomHorizontalFlip()] if self.spec.mirror_symmetric else []
        augment = [v2.RandomCrop(28, padding=2), *flip] if train else []
        return v2.Compose([*augment, v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)])

    def make_train_set(self, train: bool) -> Dataset:
        return GreyImages(*self._load(train=True), self._transform(train))

    def make_test_set(self) -> Dataset:
        return GreyImages(*self._load(train=False), self._transform(False))
