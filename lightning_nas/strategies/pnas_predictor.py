"""The PNAS accuracy predictor: an ensemble that reads a grown architecture's tokens (a cell's, 4 a block) and predicts
its proxy accuracy, and its life cycle over a search's levels (``LevelPredictors``: fit on level 1, updated with each
next level, saved per level)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, cast

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torchmetrics.regression import SpearmanCorrCoef

from lightning_nas.data.predictor import PredictorDataModule, collate
from lightning_nas.errors import ConfigError
from lightning_nas.files import write_atomic
from lightning_nas.spaces import Growth
from lightning_nas.strategies.candidates import CandidatePool


class TokenEmbedding(nn.Module):
    """One embedding table per vocabulary of the growth's tokens (PNAS: inputs and ops), each token looked up in the
    table its position within the step names."""

    def __init__(self, vocabularies: dict[str, int], step: Sequence[str], dim: int) -> None:
        super().__init__()
        self.step = tuple(step)
        for name, size in vocabularies.items():
            self.add_module(name, nn.Embedding(size, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        position = torch.arange(tokens.shape[1], device=tokens.device) % len(self.step)
        embedded = None
        for name in dict.fromkeys(self.step):
            table = cast(nn.Embedding, getattr(self, name))
            looked_up = table(tokens.clamp(max=table.num_embeddings - 1))
            reads = torch.tensor([table_name == name for table_name in self.step], device=tokens.device)[position]
            embedded = looked_up if embedded is None else torch.where(reads[None, :, None], looked_up, embedded)
        return cast(torch.Tensor, embedded)


class LSTMPredictor(nn.Module):
    """The paper's predictor: the tokens through an LSTM, its last state through FC + sigmoid."""

    def __init__(self, vocabularies: dict[str, int], step: Sequence[str], embed_dim: int = 100,
                 hidden_size: int = 100) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(vocabularies, step, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return torch.sigmoid(self.head(hidden[-1])).squeeze(-1)


class MLPPredictor(nn.Module):
    """The MLP variant: each step's token embeddings concatenated, averaged over the steps, two hidden layers."""

    def __init__(self, vocabularies: dict[str, int], step: Sequence[str], embed_dim: int = 100,
                 hidden_size: int = 100) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(vocabularies, step, embed_dim)
        self.tokens_per_step = len(step)
        self.mlp = nn.Sequential(
            nn.Linear(self.tokens_per_step * embed_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, length = tokens.shape
        steps = self.embedding(tokens).reshape(batch, length // self.tokens_per_step, -1)
        real = (torch.arange(steps.shape[1], device=tokens.device)[None] < (lengths // self.tokens_per_step)[:, None])
        mean = (steps * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return torch.sigmoid(self.mlp(mean)).squeeze(-1)


PREDICTORS: dict[str, type[nn.Module]] = {"lstm": LSTMPredictor, "mlp": MLPPredictor}


class AccuracyPredictor(pl.LightningModule):
    """An ensemble of ``ensemble_size`` predictors reading a growth's tokens (``Growth.vocabularies``, ``step``),
    member m trained with L1 loss on every fold but fold m.

    ``forward`` averages the members. Validation scores each result with the member that never saw it and logs the
    Spearman rank correlation of these out-of-fold predictions with the true accuracies (``val/spearman``).
    """

    def __init__(
        self,
        vocabularies: dict[str, int],
        step: Sequence[str],
        kind: Literal["lstm", "mlp"] = "lstm",
        embed_dim: int = 100,
        hidden_size: int = 100,
        ensemble_size: int = 5,
        lr: float = 0.01,
    ) -> None:
        super().__init__()
        if kind not in PREDICTORS:
            raise ConfigError(f"unknown predictor kind {kind!r}; choose one of {', '.join(PREDICTORS)}")
        self.save_hyperparameters()
        self.lr = lr
        self.members = nn.ModuleList(
            PREDICTORS[kind](vocabularies, step, embed_dim, hidden_size) for _ in range(ensemble_size)
        )
        self.val_spearman = SpearmanCorrCoef()

    def member_predictions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(ensemble_size, batch) predicted accuracies."""
        return torch.stack([member(tokens, lengths) for member in self.members])

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.member_predictions(tokens, lengths).mean(0)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        predictions = self.member_predictions(batch["tokens"], batch["lengths"])
        members = torch.arange(len(self.members), device=self.device)[:, None]
        trains = (batch["fold"][None] != members).float()
        loss = ((predictions - batch["accuracy"][None]).abs() * trains).sum() / trains.sum().clamp(min=1)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        predictions = self.member_predictions(batch["tokens"], batch["lengths"])
        out_of_fold = predictions.gather(0, batch["fold"][None] % len(self.members)).squeeze(0)
        self.val_spearman.update(out_of_fold, batch["accuracy"])
        self.log("val/spearman", self.val_spearman, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


PredictorUpdate = Literal["finetune", "refit"]


class LevelPredictors:
    """The predictor of a search, level by level (Algorithm 1's fit and update-predictor): the ensemble after level b
    learns levels 1..b. Level 1 trains a fresh ensemble; each further level either fine-tunes a copy of the previous
    one on its own results ("finetune", the paper) or trains a fresh one on all results so far ("refit"); either way
    seeded by (seed, b). ``records(b)`` gives what it learns after level b.

    Each ensemble is kept in memory and saved by rank 0 as ``<folder>/b<b>.pt`` with the settings it depends on; a
    restarted search loads it, or re-derives it level by level from ``records``, to the same weights, so it ranks the
    next level exactly as the uninterrupted search would. ``pool`` gives the Trainer it fits with and the ranks;
    ``growth`` (the searched space's) the tokens it reads.
    """

    def __init__(
        self,
        folder: Path,
        records: Callable[[int], list[dict[str, Any]]],
        pool: CandidatePool,
        growth: Growth,
        kind: Literal["lstm", "mlp"] = "lstm",
        epochs: int = 50,
        lr: float = 0.01,
        ensemble_size: int = 5,
        update: PredictorUpdate = "finetune",
        seed: int = 0,
    ) -> None:
        self.folder, self.records, self.pool, self.growth = folder, records, pool, growth
        self.kind, self.epochs, self.lr, self.ensemble_size = kind, epochs, lr, ensemble_size
        self.update, self.seed = update, seed
        self.ensembles: dict[int, tuple[AccuracyPredictor, float]] = {}
        """Per level b: the ensemble that has learned levels 1..b, and its out-of-fold Spearman correlation."""

    @property
    def settings(self) -> dict[str, Any]:
        """What a saved ensemble depends on besides the results: a file saved under other settings is refit."""
        return {"kind": self.kind, "epochs": self.epochs, "lr": self.lr, "ensemble_size": self.ensemble_size,
                "update": self.update, "seed": self.seed, **self.growth.settings, "B": self.growth.levels}

    def after(self, b: int) -> tuple[AccuracyPredictor, float]:
        """The ensemble that has learned levels 1..b, in eval mode, and its out-of-fold Spearman correlation on their
        results: from memory, from its file, or trained (fine-tuning the level b-1 ensemble, or refitting)."""
        if b in self.ensembles:
            return self.ensembles[b]
        path = self.folder / f"b{b}.pt"
        predictor = self.new(self.seed + b)
        saved = torch.load(path, weights_only=True) if path.is_file() else None
        if saved is not None and json.loads(saved["settings"]) == self.settings:
            predictor.load_state_dict(saved["state_dict"])
            correlation = float(saved["spearman"])
        else:
            finetune = self.update == "finetune" and b > 1
            if finetune:
                predictor = copy.deepcopy(self.after(b - 1)[0]).train()
                pl.seed_everything(self.seed + b, verbose=False)  # as if level b - 1 had been loaded from its file
            correlation = self.fit(predictor, self.records(b), {b} if finetune else None)
            if self.pool.ranks.rank == 0:
                buffer = io.BytesIO()
                torch.save({"settings": json.dumps(self.settings), "state_dict": predictor.state_dict(),
                            "spearman": correlation}, buffer)
                write_atomic(path, buffer.getvalue())
        self.ensembles[b] = predictor.eval(), correlation
        return self.ensembles[b]

    def new(self, seed: int) -> AccuracyPredictor:
        """A fresh ensemble with the search's predictor settings, its weights drawn under ``seed``."""
        pl.seed_everything(seed, verbose=False)
        return AccuracyPredictor(self.growth.vocabularies, self.growth.step, self.kind,
                                 ensemble_size=self.ensemble_size, lr=self.lr)

    def fit(self, predictor: AccuracyPredictor, records: list[dict[str, Any]],
            train_levels: set[int] | None = None) -> float:
        """Train ``predictor`` for ``epochs`` on result records (only those of ``train_levels`` when given) and leave
        it on the CPU in eval mode; return its out-of-fold Spearman correlation on all ``records``."""
        data = PredictorDataModule(records, self.tokens, self.ensemble_size, seed=self.seed, train_levels=train_levels)
        trainer = self.pool.trainer(self.epochs, [], check_val_every_n_epoch=self.epochs)
        trainer.fit(predictor, data)
        predictor.cpu().eval()
        return float(trainer.callback_metrics["val/spearman"])

    def tokens(self, cell: Any) -> list[int]:
        """A result record's ``cell`` (the growth's ``to_data``) as the predictor reads it."""
        return self.growth.tokens(self.growth.from_data(cell))

    def predict(self, predictor: AccuracyPredictor, cells: list[Any], batch_size: int = 4096) -> list[float]:
        """``predictor``'s accuracy for each grown architecture."""
        predictions = []
        with torch.no_grad():
            for start in range(0, len(cells), batch_size):
                batch = collate([(self.growth.tokens(c), 0.0, 0) for c in cells[start : start + batch_size]])
                predictions += predictor(batch["tokens"], batch["lengths"]).tolist()
        return predictions
