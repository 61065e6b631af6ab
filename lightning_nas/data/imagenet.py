"""ImageNet (or any image classification set) in the ImageFolder layout, with timm's training and evaluation transforms.

``data_dir/train/<class>/*.jpg`` trains and ``data_dir/val/<class>/*.jpg`` tests (the official validation images
sorted into class folders). The class folders are read when the module is built, so ``num_classes`` is known before
the CLI builds the model. An image PIL cannot read (corrupt, truncated, empty) is skipped with a warning naming it,
never a traceback mid-epoch; ``verify_images=True`` finds them all up front instead.
"""

import itertools
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from lightning_nas.arguments import NonNegativeInt, PositiveInt
from lightning_nas.data.base import Mode, NASDataModule, with_transform
from lightning_nas.errors import ConfigError

UNREADABLE = (OSError, SyntaxError)
"""What PIL raises for a file it cannot decode: UnidentifiedImageError (an OSError), "image file is truncated"."""


def readable(path: str) -> bool:
    """Whether PIL decodes the whole file: a JPEG is decoded at 1/8 scale, which still reads every byte but is fast."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (1, 1))
            image.load()
    except UNREADABLE:
        return False
    return True


class SkippingImageFolder(ImageFolder):
    """An ImageFolder that skips images it cannot read: the sample is the next readable image in the folder, and
    each unreadable file is warned about once (per process) and recorded in ``unreadable``."""

    samples: list[tuple[str, int]]

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.unreadable: set[str] = set()

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for position in itertools.chain(range(index, len(self.samples)), range(index)):
            path, target = self.samples[position]
            try:
                image = self.loader(path)
            except UNREADABLE as error:
                if path not in self.unreadable:
                    self.unreadable.add(path)
                    reason = "not an image file" if isinstance(error, UnidentifiedImageError) else str(error)
                    warnings.warn(f"skipping unreadable image {path}: {reason}", stacklevel=2)
                continue
            if self.transform is not None:
                image = self.transform(image)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return image, target
        raise ConfigError(f"no image in {self.root} is readable: check the files, e.g. {self.samples[index][0]}")

    def drop_unreadable(self, workers: int = 16) -> list[str]:
        """Decode every image now and drop those PIL cannot read from the samples; return their paths."""
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL
            ok = list(pool.map(readable, (path for path, _ in self.samples)))
        dropped = [path for (path, _), good in zip(self.samples, ok) if not good]
        self.samples = [sample for sample, good in zip(self.samples, ok) if good]
        self.imgs, self.targets = self.samples, [target for _, target in self.samples]
        return dropped


class ImageNetDataModule(NASDataModule):
    """ImageFolder images: random-resized crop, flip and colour jitter for training, resize and centre crop for
    evaluation (timm's ``create_transform``), at ``image_size`` pixels square.

    ``color_jitter`` is (brightness, contrast, saturation, hue), DARTS's values by default. ``verify_images`` decodes
    every image when the data is first loaded and leaves out the unreadable ones, each named in a warning, then their
    count; without it an unreadable image is skipped when it is first met and the count is warned at teardown (with
    ``num_workers`` > 0 the workers warn per file and the count covers this process only).
    """

    mean = IMAGENET_DEFAULT_MEAN
    std = IMAGENET_DEFAULT_STD

    def __init__(
        self,
        data_dir: str | Path = "data/imagenet",
        image_size: PositiveInt = 224,
        color_jitter: float | tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2),
        mode: Mode = "eval",
        batch_size: PositiveInt = 128,
        val_split: NonNegativeInt = 0,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        verify_images: bool = False,
    ) -> None:
        super().__init__(mode, batch_size, val_split, seed, num_workers, pin_memory, persistent_workers)
        self.data_dir = Path(data_dir)
        self.verify_images = verify_images
        self.input_size = (3, image_size, image_size)
        self.color_jitter = color_jitter
        self.classes = self._find_classes()
        self.num_classes = len(self.classes)
        self._images: dict[str, SkippingImageFolder] = {}

    def _find_classes(self) -> list[str]:
        """The class folders, the same under train/ and val/."""
        layout = f"{self.data_dir.resolve()}/{{train,val}}/<class>/*.jpg (the ImageFolder layout)"
        found = {}
        for part in ("train", "val"):
            folder = self.data_dir / part
            if not folder.is_dir() or not any(entry.is_dir() for entry in folder.iterdir()):
                message = f"ImageNet not found: no class folders in {folder.resolve()}; expected {layout}"
                raise FileNotFoundError(message)
            found[part] = find_classes(folder)[0]
        if found["train"] != found["val"]:
            differ = sorted(set(found["train"]) ^ set(found["val"]))
            raise ConfigError(
                f"train/ and val/ in {self.data_dir.resolve()} hold different class folders "
                f"({len(differ)} differ, e.g. {differ[:3]}): give both the same classes"
            )
        return found["train"]

    def _load(self, part: str) -> SkippingImageFolder:
        """The image list of train/ or val/, scanned once and shared by every transform."""
        if part not in self._images:
            images = SkippingImageFolder(self.data_dir / part)
            if self.verify_images:
                total = len(images.samples)
                dropped = images.drop_unreadable()
                for path in dropped:
                    warnings.warn(f"leaving out unreadable image {path}", stacklevel=2)
                if dropped:
                    warnings.warn(f"left out {len(dropped)} unreadable of {total} images in {part}/", stacklevel=2)
            self._images[part] = images
        return self._images[part]

    def teardown(self, stage: str) -> None:
        """Warn how many unreadable images this process skipped."""
        for part, images in self._images.items():
            if images.unreadable:
                warnings.warn(f"skipped {len(images.unreadable)} unreadable images in {part}/", stacklevel=2)

    def _transform(self, train: bool) -> Callable:
        return create_transform(
            self.input_size,
            is_training=train,
            color_jitter=self.color_jitter,
            mean=self.mean,
            std=self.std,
        )

    def make_train_set(self, train: bool) -> Dataset:
        return with_transform(self._load("train"), self._transform(train))

    def make_test_set(self) -> Dataset:
        return with_transform(self._load("val"), self._transform(False))
