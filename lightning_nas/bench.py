"""Speed and memory benchmark of the search and training steps: ``python -m lightning_nas.bench --help``.

Each (case, batch size) runs in a fresh subprocess, so its peak RSS (``ru_maxrss``; on a GPU
``torch.cuda.max_memory_allocated``) belongs to that case alone. Every case drives the strategy's own LightningModule
through an ordinary Trainer on random 32x32 images, and a callback times what the module does: a training step
(``training_step``: for DARTS the α step and the w step), a candidate epoch (PNAS) or a controller step (ENAS, the gap
between two controller optimizer steps). The figure is the median over ``--steps`` timed repetitions after
``--warmup`` untimed ones. Results print as a table and, with ``--json``, are written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from lightning_nas.data.base import NASDataModule
from lightning_nas.files import write_atomic

CIFAR_TRAIN_IMAGES = 45_000
"""CIFAR-10's training images minus the 5k held out, to turn step times into epoch times."""


class RandomImages(NASDataModule):
    """Random CIFAR-sized images (3x32x32, 10 classes): enough of them for the steps a case runs, nothing read."""

    num_classes = 10
    input_size = (3, 32, 32)
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self, images: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images

    def make_train_set(self, train: bool) -> Dataset:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.images, *self.input_size, generator=generator)
        return TensorDataset(x, torch.randint(0, self.num_classes, (self.images,), generator=generator))

    def make_test_set(self) -> Dataset:
        return self.make_train_set(train=False)


def clocks(device: torch.device) -> tuple[float, float]:
    """(wall, process CPU over all threads) seconds now; CPU seconds are what a shared machine's load inflates least."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


class StepTimer(pl.Callback):
    """Wall and CPU time of every training batch, or of every training epoch (``per_epoch``)."""

    def __init__(self, device: torch.device, per_epoch: bool = False) -> None:
        self.device, self.per_epoch = device, per_epoch
        self.times: list[tuple[float, float]] = []
        self._start = (0.0, 0.0)

    def _elapsed(self) -> tuple[float, float]:
        wall, cpu = clocks(self.device)
        return wall - self._start[0], cpu - self._start[1]

    def on_train_batch_start(self, *args: Any) -> None:
        if not self.per_epoch:
            self._start = clocks(self.device)

    def on_train_batch_end(self, *args: Any) -> None:
        if not self.per_epoch:
            self.times.append(self._elapsed())

    def on_train_epoch_start(self, *args: Any) -> None:
        if self.per_epoch:
            self._start = clocks(self.device)

    def on_train_epoch_end(self, *args: Any) -> None:
        if self.per_epoch:
            self.times.append(self._elapsed())


class OptimizerStepTimer(pl.Callback):
    """Time between successive steps of one of the module's optimizers (ENAS: one controller step each)."""

    def __init__(self, device: torch.device, index: int) -> None:
        self.device, self.index = device, index
        self.stamps: list[tuple[float, float]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.optimizers[self.index].register_step_post_hook(lambda *args: self._stamp())

    def _stamp(self) -> None:
        self.stamps.append(clocks(self.device))

    @property
    def times(self) -> list[tuple[float, float]]:
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.stamps, self.stamps[1:])]


class ChannelsLast(pl.Callback):
    """Weights and the network input in channels_last memory format."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)
        first_conv = next(m for m in pl_module.modules() if isinstance(m, nn.Conv2d))
        first_conv.register_forward_pre_hook(lambda m, args: (args[0].contiguous(memory_format=torch.channels_last),))


# --- cases: (module, data module, timer, trainer arguments, images per timed unit) ---------------------------------

def darts_case(unrolled: bool) -> Callable[..., tuple]:
    def build(batch: int, repeats: int, device: torch.device, partial_channels: int) -> tuple:
        from lightning_nas.strategies.darts import DARTS

        module = DARTS(C=16, layers=8, unrolled=unrolled, partial_channels=partial_channels)
        data = RandomImages(2 * batch * repeats, mode="search", batch_size=batch)
        return module, data, StepTimer(device), {"limit_train_batches": repeats}, batch

    return build


def enas_child(batch: int, repeats: int, device: torch.device, partial_channels: int) -> tuple:
    from lightning_nas.strategies.enas import ENAS

    module = ENAS(space="micro")
    module.controller_phase = lambda: None  # type: ignore[method-assign]  # this case times the child steps alone
    data = RandomImages(batch * (repeats + 2), batch_size=batch, val_split=batch)
    return module, data, StepTimer(device), {"limit_train_batches": repeats}, batch


def enas_controller(batch: int, repeats: int, device: torch.device, partial_channels: int) -> tuple:
    from lightning_nas.strategies.enas import ENAS

    module = ENAS(space="micro", controller_steps=repeats + 1)
    data = RandomImages(batch * 3, batch_size=batch, val_split=batch)
    images = batch * module.hp.controller_aggregate
    return module, data, OptimizerStepTimer(device, index=1), {"limit_train_batches": 1}, images


PNAS_BATCHES = 8
"""Training batches in one benchmarked PNAS candidate epoch (plus 2 validation batches)."""


def pnas_epoch(batch: int, repeats: int, device: torch.device, partial_channels: int) -> tuple:
    from lightning_nas.genotypes import resolve_genotype
    from lightning_nas.strategies.candidates import CandidateModule

    module = CandidateModule(resolve_genotype("PNASNet").to_dict(), num_classes=10, in_chans=3, N=2, F=24, epochs=repeats)
    data = RandomImages(batch * (PNAS_BATCHES + 2), batch_size=batch, val_split=2 * batch)
    trainer_args = {"limit_train_batches": PNAS_BATCHES, "limit_val_batches": 2, "max_epochs": repeats}
    return module, data, StepTimer(device, per_epoch=True), trainer_args, batch * PNAS_BATCHES


def final_step(batch: int, repeats: int, device: torch.device, partial_channels: int) -> tuple:
    from lightning_nas.strategies.final_training import FinalTraining

    module = FinalTraining("DARTS_V2", C=36, layers=20)
    data = RandomImages(batch * repeats, batch_size=batch)
    return module, data, StepTimer(device), {"limit_train_batches": repeats, "gradient_clip_val": 5.0}, batch


CASES: dict[str, tuple[Callable[..., tuple], tuple[int, ...], str]] = {
    "darts_first": (darts_case(unrolled=False), (32, 64), "DARTS search step, first order (C=16, 8 cells)"),
    "darts_second": (darts_case(unrolled=True), (32, 64), "DARTS search step, second order (C=16, 8 cells)"),
    "enas_child": (enas_child, (160,), "ENAS micro child step (F=20, 6+2 cells)"),
    "enas_controller": (enas_controller, (160,), "ENAS micro controller step (10 architectures scored)"),
    "pnas_epoch": (pnas_epoch, (64,), f"PNAS proxy candidate epoch (N=2, F=24, {PNAS_BATCHES} batches + 2 val)"),
    "final_step": (final_step, (96,), "DARTS_V2 training step (C=36, 20 cells, auxiliary head)"),
}
"""name -> (builder, default batch sizes, description)."""


def peak_memory(device: torch.device) -> int:
    """Peak bytes: max allocated on a GPU, this process's max RSS on CPU (Linux reports kilobytes)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """Run one case in this process and return its measurements."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    repeats = args.warmup + args.steps
    build, _, description = CASES[args.case]
    module, data, timer, trainer_args, images = build(args.worker_batch, repeats, device, args.partial_channels)
    callbacks = [timer] + ([ChannelsLast()] if args.channels_last else [])
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            **{"max_epochs": 1, "limit_val_batches": 0, **trainer_args},
            accelerator=device.type,
            devices=1,
            precision="bf16-mixed" if args.bf16 else "32-true",
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=root,
        )
        trainer.fit(module, datamodule=data)
    times = timer.times[args.warmup :]
    if len(times) < args.steps:
        raise RuntimeError(f"{args.case}: timed {len(times)} of {args.steps} steps")
    median = statistics.median(wall for wall, _ in times)
    return {
        "case": args.case,
        "description": description,
        "batch": args.worker_batch,
        "device": args.device,
        "bf16": args.bf16,
        "channels_last": args.channels_last,
        "partial_channels": args.partial_channels,
        "threads": torch.get_num_threads(),
        "median_s": median,
        "median_cpu_s": statistics.median(cpu for _, cpu in times),
        "images_per_s": images / median,
        "peak_memory_bytes": peak_memory(device),
        "memory": "max_allocated" if device.type == "cuda" else "max_rss",
        "times_s": [wall for wall, _ in times],
        "cpu_times_s": [cpu for _, cpu in times],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m lightning_nas.bench")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes for every case (default: each case's own)")
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions before them")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (Lightning precision bf16-mixed)")
    parser.add_argument("--channels-last", action="store_true", help="weights and inputs in channels_last")
    parser.add_argument("--partial-channels", type=int, default=1, help="PC-DARTS K for the DARTS cases (1: off)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # worker mode: run this one case, print its JSON
    parser.add_argument("--worker-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    return args


def worker_command(args: argparse.Namespace, case: str, batch: int) -> list[str]:
    command = [sys.executable, "-m", "lightning_nas.bench", "--case", case, "--worker-batch", str(batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
               "--partial-channels", str(args.partial_channels)]
    return command + ["--bf16"] * args.bf16 + ["--channels-last"] * args.channels_last


def format_table(results: list[dict[str, Any]]) -> str:
    header = f"{'case':<16} {'batch':>5} {'median s':>9} {'CPU s':>8} {'images/s':>9} {'peak GB':>8}  memory"
    rows = [
        f"{r['case']:<16} {r['batch']:>5} {r['median_s']:>9.3f} {r['median_cpu_s']:>8.2f} {r['images_per_s']:>9.1f} "
        f"{r['peak_memory_bytes'] / 1e9:>8.2f}  {r['memory']}"
        for r in results
    ]
    return "\n".join([header, *rows])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args)))
        return []
    results = []
    for case in args.cases.split(","):
        for batch in args.batch or CASES[case][1]:
            done = subprocess.run(worker_command(args, case, batch), capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{case} (batch {batch}) failed:\n{done.stderr[-4000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(format_table(results[-1:]).splitlines()[-1], flush=True)
    print(format_table(results))
    if args.json:
        write_atomic(args.json, json.dumps({"uptime_load": os.getloadavg(), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
