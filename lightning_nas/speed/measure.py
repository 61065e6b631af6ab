"""What every benchmark worker measures and reports, with nothing imported but torch (the official DARTS worker
must not pay for Lightning's memory)."""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any

import torch


def random_images(images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The speed bench's data: ``images`` CIFAR-sized random images (3x32x32) and labels of 10 classes, one fixed draw."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(images, 3, 32, 32, generator=generator), torch.randint(0, 10, (images,), generator=generator)


def clocks(device: torch.device) -> tuple[float, float]:
    """(wall, process CPU over all threads) seconds now; CPU seconds are what a shared machine's load inflates least."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


def reset_peak_memory(device: torch.device) -> None:
    """On a GPU, start the peak afresh when the timed steps begin, so the warm-up's one-time work (the FLOP count,
    compilation) is not in it. A CPU process's peak RSS cannot be reset: a CPU worker's warm-up does nothing extra."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: max allocated on a GPU since ``reset_peak_memory``, this process's max RSS on CPU (Linux reports
    kilobytes)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def result(args: argparse.Namespace, description: str, times: list[tuple[float, float]], images: int,
           flops: int | None = None, dispatch: tuple[int, int] | None = None) -> dict[str, Any]:
    """One worker's record: the median wall and CPU seconds of the timed units after the warm-up, images/s, peak
    memory, the FLOPs of one unit and their rate where counted, the (kernels, host syncs) one step dispatched where
    counted (``dispatch.DispatchCount``), and the point (case, batch, C, layers, options) it was measured at."""
    times = times[args.warmup :]
    if len(times) < args.steps:
        raise RuntimeError(f"{args.case}: timed {len(times)} of {args.steps} steps")
    device = torch.device(args.device)
    median = statistics.median(wall for wall, _ in times)
    return {
        "case": args.case,
        "description": description,
        "batch": args.batch[0],
        "C": args.C[0],
        "layers": args.layers[0],
        "device": args.device,
        "bf16": args.bf16,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "partial_channels": args.partial_channels,
        "checkpoint_cells": args.checkpoint_cells,
        "recompute_ops": args.recompute_ops,
        "threads": torch.get_num_threads(),
        "median_s": median,
        "median_cpu_s": statistics.median(cpu for _, cpu in times),
        "images_per_s": images / median,
        "flops_per_step": flops,
        "tflops_per_s": None if flops is None else flops / median / 1e12,
        "kernels_per_step": None if dispatch is None else dispatch[0],
        "syncs_per_step": None if dispatch is None else dispatch[1],
        "peak_memory_bytes": peak_memory(device),
        "memory": "max_allocated" if device.type == "cuda" else "max_rss",
        "times_s": [wall for wall, _ in times],
        "cpu_times_s": [cpu for _, cpu in times],
    }
