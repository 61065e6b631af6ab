"""What every lightning_nas data module shares: evaluation and search modes, splits, samplers and loaders.

``mode="eval"``: train on the training set (minus ``val_split`` held-out images), validate on the held-out images
(or on the test set when ``val_split`` is 0), test on the test set.

``mode="search"``: the training set (minus the held-out images) is split by ``seed`` into two disjoint halves. Each
training step yields ``{"weights": (x, y), "arch": (x, y)}``: a batch from the weight half and one from the
architecture half (DARTS's w and α steps; ENAS uses ``val_split`` for the controller's reward instead). Validation
reads the held-out images if any, else the architecture half.

Shuffling is a function of (seed, epoch) so a resumed run sees the same data order as an uninterrupted one.

Distributed runs (DDP): every loader shards its data itself over the running torch.distributed process group, with
samplers that are ``DistributedSampler`` instances, so Lightning leaves them alone (no ``use_distributed_sampler:
false`` needed). Shuffled loaders (training, ``heldout_dataloader(shuffle=True)``) give
each rank an equal share of the (seed, epoch) permutation, padded to a multiple of the world size as PyTorch's
``DistributedSampler`` does, so every rank runs the same number of steps. Ordered loaders (validation, test,
``heldout_dataloader(shuffle=False)``) use Lightning's ``UnrepeatedDistributedSampler``: every image is read exactly
once across ranks, never padded, so metrics synced as sums (torchmetrics) equal the single-process ones; ranks may
then run one batch more or less, so eval steps must not call collectives (``self.log(..., sync_dist=True)`` per step).
"""

import copy
from typing import Any, Callable, Literal, Sized, cast

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import VisionDataset
from torchvision.datasets.vision import StandardTransform

from lightning_nas.arguments import NonNegativeInt, PositiveInt
from lightning_nas.errors import ConfigError

Mode = Literal["eval", "search"]


def process_group() -> tuple[int, int]:
    """(number of processes, this process's rank) of the running torch.distributed group; (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def with_transform(dataset: VisionDataset, transform: Callable) -> VisionDataset:
    """A view of a torchvision dataset with another transform: the augmented and plain training sets read the files
    once and share the images."""
    view = copy.copy(dataset)
    view.transform = transform
    view.transforms = StandardTransform(transform, dataset.target_transform)
    return view


class EpochSampler(DistributedSampler):
    """DistributedSampler whose ``set_epoch`` also reseeds the loader's generator, from which worker seeds are drawn.

    The loader starts at the trainer's current epoch: on resume Lightning makes the first iterator (and so the
    workers, which take indices at once) before it calls ``set_epoch``, so the resumed epoch must be set already.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, epoch: int) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed)
        self.generator = torch.Generator()
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.generator.manual_seed(self.seed + epoch)


class NASDataModule(pl.LightningDataModule):
    """Base class: subclasses build the datasets (``make_train_set``, ``make_test_set``) and describe the images."""

    num_classes: int
    input_size: tuple[int, int, int]
    """(channels, height, width) of the images the network receives."""
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        mode: Mode = "eval",
        batch_size: PositiveInt = 64,
        val_split: NonNegativeInt = 0,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("eval", "search"):
            raise ConfigError(f"mode must be 'eval' or 'search', got {mode!r}")
        self.mode = mode
        self.batch_size = batch_size
        self.val_split = val_split
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self._splits: dict[str, Dataset] = {}

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    def make_train_set(self, train: bool) -> Dataset:
        """The training images, with training augmentation if ``train`` else the evaluation transform."""
        raise NotImplementedError

    def make_test_set(self) -> Dataset:
        """The test images with the evaluation transform."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        train_set, plain_train_set = self.make_train_set(train=True), self.make_train_set(train=False)
        order = torch.randperm(len(cast(Sized, train_set)), generator=torch.Generator().manual_seed(self.seed)).tolist()
        if not 0 <= self.val_split < len(order):
            raise ConfigError(f"val_split={self.val_split} must be between 0 and the {len(order)} training images")
        held_out, rest = order[: self.val_split], order[self.val_split :]
        if held_out:
            self._splits["heldout"] = Subset(plain_train_set, held_out)
        if self.mode == "search":
            half = len(rest) // 2
            self._splits["weights"] = Subset(train_set, sorted(rest[:half]))
            self._splits["arch"] = Subset(train_set, sorted(rest[half:]))
        else:
            self._splits["train"] = Subset(train_set, sorted(rest))
        self._splits["test"] = self.make_test_set()

    def split(self, name: str) -> Dataset:
        """One of the datasets built by setup: train, weights, arch, heldout, test."""
        self.setup()
        if name not in self._splits:
            raise KeyError(f"no {name!r} split in mode {self.mode!r} (have {', '.join(self._splits)})")
        return self._splits[name]

    def _loader(self, dataset: Dataset, shuffle: bool, salt: int = 0) -> DataLoader:
        """Shuffled: this rank's equal share of the (seed + salt, epoch) permutation; ordered: every image once."""
        num_replicas, rank = process_group()
        sampler: DistributedSampler
        if shuffle:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            sampler = EpochSampler(dataset, num_replicas, rank, self.seed + salt, epoch)
            generator = sampler.generator
        else:
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
            generator = torch.Generator().manual_seed(self.seed + salt)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=shuffle and len(sampler) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            # worker seeds come from here, not from the global RNG, which training reseeds per epoch for exact resume
            generator=generator,
        )

    def train_dataloader(self) -> Any:
        if self.mode == "search":
            loaders = {
                "weights": self._loader(self.split("weights"), shuffle=True),
                "arch": self._loader(self.split("arch"), shuffle=True, salt=1),
            }
            return CombinedLoader(loaders, mode="min_size")
        return self._loader(self.split("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_split:
            return self._loader(self.split("heldout"), shuffle=False)
        return self._loader(self.split("arch" if self.mode == "search" else "test"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """``predict`` reads the test set, in order."""
        return self.test_dataloader()

    def heldout_dataloader(self, shuffle: bool = True) -> DataLoader:
        """Loader over the held-out images (ENAS rewards, PNAS candidate scores)."""
        return self._loader(self.split("heldout"), shuffle=shuffle, salt=2)
