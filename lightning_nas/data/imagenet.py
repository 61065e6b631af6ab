"""ImageNet (or any image classification set) in the ImageFolder layout, with timm's training and evaluation transforms.

``data_dir/train/<class>/*.jpg`` trains and ``data_dir/val/<class>/*.jpg`` tests (the official validation images
sorted into class folders). The class folders are read when the module is built, so ``num_classes`` is known before
the CLI builds the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from lightning_nas.data.base import Mode, NASDataModule, with_transform


class ImageNetDataModule(NASDataModule):
    """ImageFolder images: random-resized crop, flip and colour jitter for training, resize and centre crop for
    evaluation (timm's ``create_transform``), at ``image_size`` pixels square.

    ``color_jitter`` is (brightness, contrast, saturation, hue), DARTS's values by default.
    """

    mean = IMAGENET_DEFAULT_MEAN
    std = IMAGENET_DEFAULT_STD

    def __init__(
        self,
        data_dir: str | Path = "data/imagenet",
        image_size: int = 224,
        color_jitter: float | tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2),
        mode: Mode = "eval",
        batch_size: int = 128,
        val_split: int = 0,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__(mode, batch_size, val_split, seed, num_workers, pin_memory, persistent_workers)
        self.data_dir = Path(data_dir)
        self.input_size = (3, image_size, image_size)
        self.color_jitter = color_jitter
        self.classes = self._find_classes()
        self.num_classes = len(self.classes)
        self._images: dict[str, ImageFolder] = {}

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
            raise ValueError(
                f"train/ and val/ in {self.data_dir.resolve()} hold different class folders "
                f"({len(differ)} differ, e.g. {differ[:3]}): give both the same classes"
            )
        return found["train"]

    def _load(self, part: str) -> ImageFolder:
        """The image list of train/ or val/, scanned once and shared by every transform."""
        if part not in self._images:
            self._images[part] = ImageFolder(self.data_dir / part)
        return self._images[part]

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
