import random
from types import SimpleNamespace

import numpy as np
import torch

from lightning_nas.callbacks import EpochSeeding


def _draws(callback: EpochSeeding, epoch: int, rank: int = 0) -> tuple[list[float], float, float]:
    callback.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, global_rank=rank), None)
    return torch.rand(3).tolist(), float(np.random.rand()), random.random()


def test_an_epochs_draws_depend_only_on_seed_epoch_and_rank() -> None:
    callback = EpochSeeding()
    callback.seed = 7
    first = _draws(callback, epoch=2)
    torch.rand(100), np.random.rand(100), random.random()  # whatever happened before, as in a resumed run
    resumed = EpochSeeding()
    resumed.seed = 7
    assert _draws(resumed, epoch=2) == first
    assert _draws(resumed, epoch=3) != first
    assert _draws(resumed, epoch=2, rank=1) != first
