"""Stop a diverged run while its last checkpoint, genotype and history still hold finite state."""

from __future__ import annotations

from typing import Mapping

import lightning.pytorch as pl
import torch

DIVERGED_HINT = "lower the learning rate or set trainer.gradient_clip_val"


def check_finite(
    module: pl.LightningModule, phase: str, values: Mapping[str, torch.Tensor | float], hint: str = DIVERGED_HINT
) -> None:
    """Raise FloatingPointError naming the value, epoch, step and ``phase`` if any of ``values`` holds a NaN or an
    infinity.

    Call it on a loss before its backward pass and optimizer step, and on epoch metrics and the module's state in
    ``on_validation_epoch_end`` / ``on_train_epoch_end`` (they run before ModelCheckpoint saves): the run then stops
    before non-finite numbers reach the weights or any file. ``module_state`` gives the state to check."""
    for name, value in values.items():
        tensor = torch.as_tensor(value)
        if not bool(torch.isfinite(tensor).all()):
            shown = tensor.item() if tensor.numel() == 1 else "non-finite"
            raise FloatingPointError(
                f"{name} is {shown} in epoch {module.current_epoch}, step {module.global_step} ({phase}); {hint}"
            )


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name (BN running statistics included), for ``check_finite``."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}
