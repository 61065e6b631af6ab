"""The PNAS results file and the PredictorDataModule that turns it into (token sequence, accuracy) batches.

The results file is JSON Lines, one finished candidate per line. Every append rewrites the file to a temporary file
and renames it over the old one, under an exclusive lock, so a search killed at any moment leaves either the old or
the new file, and several ranks may append at once. A truncated last line (a file copied mid-write, a full disk) is
skipped with a warning; a corrupt line elsewhere is an error. A second record of the same ``key`` (two writers that
raced before this file was locked per run) is ignored: the first one counts.

The file belongs to one configuration: ``bind`` stores a fingerprint of it beside the file (``<name>.fingerprint.json``)
and refuses to go on under a different one, so a restart never mixes accuracies of different proxy budgets.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Collection, Sequence, cast

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_nas.errors import ConfigError
from lightning_nas.files import write_atomic


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: ``{"data": {"seed": 0}}`` → ``{"data.seed": 0}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class ResultsFile:
    """Append-only JSON Lines file of candidate results, safe against kills and concurrent writers."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        records, keys = [], set()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ValueError(f"{self.path}:{number} is not valid JSON; repair or remove that line") from None
                warnings.warn(f"{self.path}: ignoring a truncated last line (that candidate will be trained again)")
                continue
            if record.get("key") is None or record["key"] not in keys:
                records.append(record)
                keys.add(record.get("key"))
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.read()) + json.dumps(record) + "\n")

    @property
    def fingerprint_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.fingerprint.json")

    def bind(self, fingerprint: dict[str, Any], added: dict[str, Any] | None = None) -> None:
        """Tie the file to ``fingerprint`` (JSON data): store it on first use; raise a one-line ConfigError naming
        the keys that differ when the file was written under another one. A file from before fingerprints is adopted.
        ``added`` holds the keys the fingerprint gained later (dotted), each with the value every file written before
        it was trained under: a stored fingerprint without the key reads as that value, so old results still resume."""
        fingerprint = json.loads(json.dumps(fingerprint, default=str))
        if self.fingerprint_path.is_file():
            stored = {**(added or {}), **flatten(json.loads(self.fingerprint_path.read_text()))}
            wanted = flatten(fingerprint)
            differ = sorted(key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key))
            if differ:
                changes = ", ".join(f"{key} {stored.get(key)!r} -> {wanted.get(key)!r}" for key in differ)
                raise ConfigError(f"{self.path} holds results of another configuration ({changes}): restore those "
                                  f"settings to resume it, or give another output folder")
        else:
            write_atomic(self.fingerprint_path, json.dumps(fingerprint, indent=1, sort_keys=True))


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

    ``encode`` turns a result's ``cell`` into its token sequence. Folds are a seeded permutation within each level
    (a result's ``b``), so a refit on the same results gives the same ensemble and a result keeps its fold when later
    levels arrive: an ensemble fine-tuned level by level never trains member m on fold m. ``train_levels`` limits
    training to those levels (fine-tuning on the newest); validation reads all results and scores each on the member
    that did not train on it (out-of-fold).
    """

    def __init__(
        self,
        results: str | os.PathLike | list[dict[str, Any]],
        encode: Callable[[Any], list[int]],
        num_folds: int = 5,
        batch_size: int = 64,
        seed: int = 0,
        train_levels: Collection[int] | None = None,
    ) -> None:
        super().__init__()
        records = results if isinstance(results, list) else ResultsFile(results).read()
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
