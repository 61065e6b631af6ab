"""Stop a diverged run while its last checkpoint, genotype and history still hold finite state.

A training step never reads a value on the host (that would stall the GPU's launch queue and rule out replaying the
step as a CUDA graph): it computes ``nonfinite`` on the device and ``skip_step_if`` makes its fused optimizers leave
parameters and state as they are when it is set. After the step, ``check_finite`` reads the value and raises, before
any callback or checkpoint sees the step, so the run stops with the state from before the diverged step.
"""

from __future__ import annotations

from typing import Mapping

import lightning.pytorch as pl
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer

DIVERGED_HINT = "lower the learning rate or set trainer.gradient_clip_val"


def check_finite(
    module: pl.LightningModule,
    phase: str,
    values: Mapping[str, torch.Tensor | float],
    hint: str = DIVERGED_HINT,
    step: int | None = None,
) -> None:
    """Raise FloatingPointError naming the value, epoch, step (``step``, or the module's global step) and ``phase`` if
    any of ``values`` holds a NaN or an infinity.

    Call it on a training loss after a step that ``skip_step_if`` skipped for it, and on epoch metrics and the
    module's state in ``on_validation_epoch_end`` / ``on_train_epoch_end`` (they run before ModelCheckpoint saves):
    the run then stops before non-finite numbers reach the weights or any file. ``module_state`` gives the state to
    check."""
    for name, value in values.items():
        tensor = torch.as_tensor(value)
        if not bool(torch.isfinite(tensor).all()):
            shown = tensor.item() if tensor.numel() == 1 else "non-finite"
            step = module.global_step if step is None else step
            raise FloatingPointError(f"{name} is {shown} in epoch {module.current_epoch}, step {step} ({phase}); {hint}")


def nonfinite(*tensors: torch.Tensor | None) -> torch.Tensor:
    """1.0 if any of ``tensors`` holds a NaN or an infinity, else 0.0 (None, a gradient not computed, is skipped):
    computed on their device without a host synchronisation, as the ``found_inf`` that ``skip_step_if`` takes."""
    finite = torch.stack([t.detach().isfinite().all() for t in tensors if t is not None]).all()
    return (~finite).float()


def nonfinite_on_any_rank(module: pl.LightningModule, *tensors: torch.Tensor | None) -> torch.Tensor:
    """``nonfinite`` of ``tensors`` on any rank (a max over the ranks, on the device), so that every rank skips the
    same steps and raises together."""
    found = nonfinite(*tensors)
    if module.trainer.world_size > 1:
        torch.distributed.all_reduce(found, op=torch.distributed.ReduceOp.MAX)
    return found


def skip_step_if(optimizer: torch.optim.Optimizer | LightningOptimizer, found_inf: torch.Tensor) -> None:
    """Make the fused ``optimizer``'s next steps leave its parameters and state untouched where ``found_inf`` (a
    0-dim float on its device, from ``nonfinite``) is 1: the step is skipped on the device, as GradScaler skips one,
    with nothing read on the host."""
    raw = optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
    raw.found_inf = found_inf  # type: ignore[attr-defined]  # read by the fused SGD, Adam and AdamW steps


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name (BN running statistics included), for ``check_finite``."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}

