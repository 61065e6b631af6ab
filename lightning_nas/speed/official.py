"""The official DARTS search step (quark0/darts, ``cnn/``) timed beside ours, from a local checkout.

Nothing of that code is part of this package: ``--official`` (or ``DARTS_OFFICIAL``) points at a checkout, and this
worker imports its ``model_search.Network`` and ``architect.Architect`` and runs one step as its ``train_search.py``
does: ``Architect.step`` (the α step, first or second order) on a batch of the search half, then the w step (SGD with
momentum 0.9, weight decay 3e-4, gradient norm clipped at 5) on a batch of the training half. The official code
calls ``.cuda()`` throughout; on CPU those calls are made no-ops in this worker process only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from lightning_nas.speed.dispatch import DispatchCount
from lightning_nas.speed.measure import clocks, random_images, reset_peak_memory, result
from lightning_nas.errors import ConfigError

OFFICIAL_CASES = {"official_first": False, "official_second": True}
"""Official case -> whether its α step is unrolled (second order)."""


def official_source(path: str | None) -> Path:
    """The official code's ``cnn`` folder under ``path`` (a checkout of quark0/darts); a ConfigError names the fix."""
    if not path:
        raise ConfigError("the official DARTS comparison needs a checkout of quark0/darts: give --official PATH or set "
                          "DARTS_OFFICIAL=PATH (git clone https://github.com/quark0/darts)")
    source = Path(path) / "cnn"
    if not (source / "model_search.py").is_file() or not (source / "architect.py").is_file():
        raise ConfigError(f"{path} is not a quark0/darts checkout: {source}/model_search.py and architect.py are "
                          f"missing; point --official / DARTS_OFFICIAL at the repository's root")
    return source


@contextmanager
def official_code(path: str | None, device: torch.device) -> Iterator[tuple[Any, Any]]:
    """(Network, Architect) of the checkout at ``path``; on CPU its ``.cuda()`` calls do nothing meanwhile. Python's
    path, module table and torch are restored after."""
    source, saved_cuda = str(official_source(path)), (torch.Tensor.cuda, nn.Module.cuda)
    if device.type == "cpu":  # the official code moves every tensor and model to the GPU itself
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, source)
    try:
        yield importlib.import_module("model_search").Network, importlib.import_module("architect").Architect
    finally:
        torch.Tensor.cuda, nn.Module.cuda = saved_cuda  # type: ignore[method-assign]
        sys.path.remove(source)
        for name in ("model_search", "architect", "operations", "genotypes", "utils"):
            sys.modules.pop(name, None)


def run_official(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``warmup + steps`` official search steps in this process and return the record ``measure.result`` makes."""
    device = torch.device(args.device)
    with official_code(args.official, device) as (Network, Architect):
        times, dispatch = official_steps(args, device, Network, Architect)
    order = "second" if OFFICIAL_CASES[args.case] else "first"
    return result(args, f"official DARTS search step, {order} order", times, args.batch[0], dispatch=dispatch)


def official_steps(args: argparse.Namespace, device: torch.device, Network: Any, Architect: Any
                   ) -> tuple[list[tuple[float, float]], tuple[int, int] | None]:
    """(wall, CPU) seconds of each official step: α step then w step, as ``train_search.py`` runs them; and the
    (kernels, host syncs) the first step dispatched, counted when it is a warm-up step."""
    torch.manual_seed(0)
    batch, repeats = args.batch[0], args.warmup + args.steps
    model = Network(args.C[0], 10, args.layers[0], nn.CrossEntropyLoss()).to(device)
    lr = 0.025
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=3e-4)
    hyper = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3)
    architect = Architect(model, hyper)
    x, y = (t.to(device) for t in random_images(2 * batch * repeats))
    half = batch * repeats
    times, dispatch = [], None
    for step in range(repeats):
        w_batch = slice(step * batch, (step + 1) * batch)
        arch_batch = slice(half + step * batch, half + (step + 1) * batch)
        if step == args.warmup:
            reset_peak_memory(device)
        start = clocks(device)
        with DispatchCount() if step == 0 < args.warmup else nullcontext() as count:
            architect.step(x[w_batch], y[w_batch], x[arch_batch], y[arch_batch], lr, optimizer,
                           unrolled=OFFICIAL_CASES[args.case])
            optimizer.zero_grad()
            loss = model._loss(x[w_batch], y[w_batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        end = clocks(device)
        times.append((end[0] - start[0], end[1] - start[1]))
        if count is not None:
            dispatch = (count.kernels, count.total_syncs)
    return times, dispatch
