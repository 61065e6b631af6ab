"""The PredictorDataModule that turns PNAS result records into (token sequence, accuracy) batches for the predictor."""

from __future__ import annotations

from typing import Any, Callable, Collection, Sequence, cast

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset


def collate(items: Sequence[tuple[list[int], float, int]]) -> dict[str, torch.Tensor]:
    """Pad token sequences of different lengths with 0; ``lengths`` says how many tokens are real."""
    lengths = torch.tensor([len(tokens) for tokens, _, _ in items])
    tokens = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)
    for row, (sequence, _, _) in enumerate(items):
        tokens[row, : len(sequence)] = torch.tensor(sequence)
    return {
        "tokens": tokens,
        "lengths": lengths,
        "accuracy": torch.tensor([accuracy for _, accuracy, _ in items], dtype=torch.float32),
        "fold": torch.tensor([fold for _, _, fold in items]),
    }


class PredictorDataModule(pl.LightningDataModule):
    """Results as (tokens, accuracy, fold) samples; each of the ``num_folds`` predictors of an ensemble skips its fold.

    ``records`` are result records (as a search's results file holds them) and ``encode`` turns a record's ``cell``
    into its token sequence. Folds are a seeded permutation within each level (a result's ``b``), so a refit on the
    same results gives the same ensemble and a result keeps its fold when later levels arrive: an ensemble fine-tuned
    level by level never trains member m on fold m. ``train_levels`` limits training to those levels (fine-tuning on
    the newest); validation reads all results and scores each on the member that did not train on it (out-of-fold).
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        encode: Callable[[Any], list[int]],
        num_folds: int = 5,
        batch_size: int = 64,
        seed: int = 0,
        train_levels: Collection[int] | None = None,
    ) -> None:
        super().__init__()
        if len(records) < num_folds:
            raise ValueError(f"the predictor needs at least num_folds={num_folds} results, got {len(records)}")
        fold: dict[int, int] = {}
        for level in sorted({r.get("b", 0) for r in records}):
            members = [i for i, r in enumerate(records) if r.get("b", 0) == level]
            order = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed + level)).tolist()
            fold.update({members[index]: rank % num_folds for rank, index in enumerate(order)})
        self.samples = [(encode(r["cell"]), float(r["accuracy"]), fold[i]) for i, r in enumerate(records)]
        self.trained = [sample for sample, r in zip(self.samples, records)
                        if train_levels is None or r.get("b", 0) in train_levels]
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        # a list of samples is a map-style dataset, though torch annotates DataLoader's argument as Dataset
        trained = cast(Dataset, self.trained)
        return DataLoader(trained, self.batch_size, shuffle=True, collate_fn=collate, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(cast(Dataset, self.samples), self.batch_size, collate_fn=collate)
