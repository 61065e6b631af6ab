"""Module state that a computation may touch but must leave as it found it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """``module``'s buffers (BN running statistics) as they were before, whatever runs meanwhile: a checkpointed
    cell's recomputation must not count its batch twice, and scoring an architecture must not change the child."""
    saved = [buffer.clone() for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)
