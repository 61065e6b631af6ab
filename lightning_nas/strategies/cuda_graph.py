"""What lets one CUDA graph replay a training step, and the replay (``GraphedStep``).

A captured step reads no value on the host (``finite`` checks it after the step) and finds everything it reads at
the same address on every replay: learning rates are tensors that the schedules write into in place, the optimizers
are fused (a non-finite step is skipped on the device, ``finite.skip_step_if``) and capturable on CUDA, the search
and training loaders drop the last partial batch (static shapes), and BatchNorm updates its running statistics in
place.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import lightning.pytorch as pl
import torch

from lightning_nas.errors import check


def check_graphable(module: pl.LightningModule, step: str) -> None:
    """What a replayed ``step`` needs of the Trainer, refused in one line at fit start: one CUDA device without a
    distributed strategy (a graph replays no collective; ``strategy=ddp`` on one device passes a world-size check),
    and no gradient accumulation (under automatic optimization Lightning calls the closure alone on accumulation
    batches, so the replay would apply the whole step, update included)."""
    trainer = module.trainer
    distributed = isinstance(trainer.strategy, pl.strategies.ParallelStrategy)
    check(trainer.accumulate_grad_batches == 1,
          f"cuda_graph replays whole steps, update included: drop --trainer.accumulate_grad_batches "
          f"{trainer.accumulate_grad_batches} (raise the batch size instead) or --model.cuda_graph")
    check(module.device.type == "cuda" and trainer.world_size == 1 and not distributed,
          f"cuda_graph replays the {step} on one CUDA device, not on {trainer.world_size} x {module.device.type} "
          f"({type(trainer.strategy).__name__}): drop --model.cuda_graph or run on one GPU without a distributed "
          f"strategy")


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


def lr_tensors_to(optimizers: Iterable[torch.optim.Optimizer], device: torch.device) -> None:
    """Put every tensor learning rate back on ``device``. Lightning loads a checkpoint onto the CPU and
    ``Optimizer.load_state_dict`` swaps in the saved ``lr`` (a new CPU tensor), moving only the state: a CUDA fused
    step would read that lr with ``.item()``, which a capture bakes in, so a resumed graph would run with a frozen
    schedule. The schedulers write into the group's tensor in place, so they follow it."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor) and group["lr"].device != device:
                group["lr"] = group["lr"].to(device)


def adam_options(device: torch.device) -> dict[str, Any]:
    """Adam/AdamW options for a step that may be skipped on the device (fused) and captured (capturable on CUDA)."""
    return {"fused": True, "capturable": device.type == "cuda"}


class GraphedStep:
    """A training step replayed as one CUDA graph: the first ``warmup`` calls run eagerly on a side stream (cuDNN
    picks its kernels, the optimizers make their state), the next is captured (``torch.cuda.graph``) and run, and
    every later call copies its inputs into the static ones the graph reads and replays it, launching the step's
    thousands of small kernels at once.

    ``step`` takes and returns tensors, reads nothing on the host, and takes the same Python branches on every call
    (a step of another kind needs a ``GraphedStep`` of its own); its outputs are overwritten by the next replay, and
    its Python (hooks, bookkeeping) runs at capture only. A call whose inputs differ in shape runs eagerly."""

    def __init__(self, step: Callable[..., Any], warmup: int = 3) -> None:
        self.step, self.warmup = step, warmup
        self.eager_calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        """The captured graph, None until the capture is over (the step's Python may ask, while it is captured)."""
        self.inputs: list[torch.Tensor] = []
        self.outputs: Any = None
        self.replayed = False
        """Whether the last call replayed the graph without running the step's Python."""

    def __call__(self, *inputs: torch.Tensor) -> Any:
        self.replayed = False
        if self.graph is None and self.eager_calls < self.warmup:
            self.eager_calls += 1
            return self._on_side_stream(inputs)
        if self.graph is None:
            self.inputs = [x.clone() for x in inputs]
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.outputs = self.step(*self.inputs)
            self.graph = graph
        elif [x.shape for x in inputs] != [x.shape for x in self.inputs]:
            return self.step(*inputs)
        else:
            for static, x in zip(self.inputs, inputs):
                static.copy_(x)
            self.replayed = True
        self.graph.replay()
        return self.outputs

    def _on_side_stream(self, inputs: tuple[torch.Tensor, ...]) -> Any:
        """Warm-up runs off the default stream, as capture requires of the work before it."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self.step(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        return outputs
