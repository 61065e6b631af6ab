"""The PNAS accuracy predictor: an ensemble that reads a cell's tokens and predicts its proxy accuracy."""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
from torch import nn
from lightning_nas.errors import ConfigError
from torch.nn.utils.rnn import pack_padded_sequence
from torchmetrics.regression import SpearmanCorrCoef

TOKENS_PER_BLOCK = 4
"""(input1, input2, op1, op2): positions 0, 1 read the input embedding, 2, 3 the op embedding."""


class TokenEmbedding(nn.Module):
    """Separate embedding tables for input tokens and op tokens, chosen by position within the block."""

    def __init__(self, num_inputs: int, num_ops: int, dim: int) -> None:
        super().__init__()
        self.inputs = nn.Embedding(num_inputs, dim)
        self.ops = nn.Embedding(num_ops, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        is_input = (torch.arange(tokens.shape[1], device=tokens.device) % TOKENS_PER_BLOCK < 2)[None, :, None]
        as_input = self.inputs(tokens.clamp(max=self.inputs.num_embeddings - 1))
        as_op = self.ops(tokens.clamp(max=self.ops.num_embeddings - 1))
        return torch.where(is_input, as_input, as_op)


class LSTMPredictor(nn.Module):
    """The paper's predictor: the 4b tokens through an LSTM, its last state through FC + sigmoid."""

    def __init__(self, num_inputs: int, num_ops: int, embed_dim: int = 100, hidden_size: int = 100) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(num_inputs, num_ops, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return torch.sigmoid(self.head(hidden[-1])).squeeze(-1)


class MLPPredictor(nn.Module):
    """The MLP variant: each block's 4 token embeddings concatenated, averaged over the blocks, two hidden layers."""

    def __init__(self, num_inputs: int, num_ops: int, embed_dim: int = 100, hidden_size: int = 100) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(num_inputs, num_ops, embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(TOKENS_PER_BLOCK * embed_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, steps = tokens.shape
        blocks = self.embedding(tokens).reshape(batch, steps // TOKENS_PER_BLOCK, -1)
        real = (torch.arange(blocks.shape[1], device=tokens.device)[None] < (lengths // TOKENS_PER_BLOCK)[:, None])
        mean = (blocks * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return torch.sigmoid(self.mlp(mean)).squeeze(-1)


PREDICTORS: dict[str, type[nn.Module]] = {"lstm": LSTMPredictor, "mlp": MLPPredictor}


class AccuracyPredictor(pl.LightningModule):
    """An ensemble of ``ensemble_size`` predictors, member m trained with L1 loss on every fold but fold m.

    ``forward`` averages the members. Validation scores each result with the member that never saw it and logs the
    Spearman rank correlation of these out-of-fold predictions with the true accuracies (``val/spearman``).
    """

    def __init__(
        self,
        num_inputs: int,
        num_ops: int,
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
            PREDICTORS[kind](num_inputs, num_ops, embed_dim, hidden_size) for _ in range(ensemble_size)
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
