"""What lets one CUDA graph replay a training step.

A captured step reads no value on the host (``finite`` checks it after the step) and finds everything it reads at
the same address on every replay: learning rates are tensors that the schedules write into in place, the optimizers
are fused (a non-finite step is skipped on the device, ``finite.skip_step_if``) and capturable on CUDA, the search
and training loaders drop the last partial batch (static shapes), and BatchNorm updates its running statistics in
place.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


def fused_sgd(
    params: Iterable[torch.nn.Parameter],
    lr: float | torch.Tensor,
    momentum: float,
    weight_decay: float,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """SGD with the fused kernel, every momentum buffer made up front (zeros) and again after loading a state that
    lacks some. The fused kernel takes one buffer for every parameter with a gradient as soon as any has one, where
    GDAS and ENAS give some parameters their first gradient later; a zero buffer makes the first step the same
    (buffer = gradient), and no step takes a first-step branch."""
    optimizer = torch.optim.SGD(params, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                fused=True)
    if momentum:
        _make_momentum_buffers(optimizer)
        optimizer.register_load_state_dict_post_hook(_make_momentum_buffers)
    return optimizer


def _make_momentum_buffers(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            if optimizer.state[p].get("momentum_buffer") is None:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def adam_options(device: torch.device) -> dict[str, Any]:
    """Adam/AdamW options for a step that may be skipped on the device (fused) and captured (capturable on CUDA)."""
    return {"fused": True, "capturable": device.type == "cuda"}
