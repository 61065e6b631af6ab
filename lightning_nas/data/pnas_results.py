"""The PNAS results file and the PredictorDataModule that turns it into (token sequence, accuracy) batches.

The results file is JSON Lines, one finished candidate per line. Every append rewrites the file to a temporary file
and renames it over the old one, under an exclusive lock, so a search killed at any moment leaves either the old or
the new file, and several ranks may append at once. A truncated last line (a file copied mid-write, a full disk) is
skipped with a warning; a corrupt line elsewhere is an error.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lightning_nas.files import write_atomic


class ResultsFile:
    """Append-only JSON Lines file of candidate results, safe against kills and concurrent writers."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ValueError(f"{self.path}:{number} is not valid JSON; repair or remove that line") from None
                warnings.warn(f"{self.path}: ignoring a truncated last line (that candidate will be trained again)")
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.read()) + json.dumps(record) + "\n")


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

    ``encode`` turns a result's ``cell`` into its token sequence. Folds are a seeded permutation, so a refit on the
    same results gives the same ensemble. Validation reads all results; the predictor scores each on the member that
    did not train on it (out-of-fold).
    """

    def __init__(
        self,
        results: str | os.PathLike | list[dict[str, Any]],
        encode: Callable[[Any], list[int]],
        num_folds: int = 5,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        records = results if isinstance(results, list) else ResultsFile(results).read()
        if len(records) < num_folds:
            raise ValueError(f"the predictor needs at least num_folds={num_folds} results, got {len(records)}")
        order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
        fold = {index: rank % num_folds for rank, index in enumerate(order)}
        self.samples = [(encode(r["cell"]), float(r["accuracy"]), fold[i]) for i, r in enumerate(records)]
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.samples, self.batch_size, shuffle=True, collate_fn=collate, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.samples, self.batch_size, collate_fn=collate)
