"""Measured latency of an architecture's network on the device it will run on, cached per device in a table.

Parameters and FLOPs track what a network costs on a device poorly (HW-NAS-Bench, Li et al., ICLR 2021), so a
latency budget times the network itself: ``space.build(arch, num_classes, in_chans, **network)`` in eval mode under
``torch.inference_mode``, ``warmup`` forward passes then the median of ``repeats`` timed ones (CUDA synchronised
around each), on one batch of random images (``LatencySetting``: device, batch size, input size, threads). On one CPU
thread a pass is timed by that thread's CPU time, so other processes on a shared machine do not inflate it.

Timing thousands of networks takes minutes to hours, so every figure is kept in a CSV per space, network and setting
(``LatencyTable``), keyed by ``space.key(arch)``, under ``$LIGHTNING_NAS_LATENCY_CACHE`` (default
``~/.cache/lightning_nas/latency``). The file name and its first line identify what was timed (CPU model or CUDA
device name, torch version, threads, batch, input size, network), so a second search on the same machine measures
nothing again and another device or batch size is another file. Files are written atomically, merged with what
another process wrote meanwhile; a file that does not read back as such a table is refused in one line.
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn

from lightning_nas.errors import ConfigError, check
from lightning_nas.files import write_atomic

if TYPE_CHECKING:
    from lightning_nas.spaces.base import Architecture, SearchSpace

CACHE_ENV = "LIGHTNING_NAS_LATENCY_CACHE"
"""The environment variable naming the cache folder."""
SAVE_EVERY_S = 10.0
"""A table measuring one architecture after another rewrites its file at most this often (and when it is dropped)."""
COLUMNS = ["key", "arch", "ms"]

Timer = Callable[[nn.Module, torch.Tensor, "LatencySetting"], list[float]]
"""Times one network on one input: the milliseconds of each timed forward pass (``time_forward``; tests plant one)."""


@dataclass(frozen=True)
class LatencySetting:
    """Where and how a network is timed: on ``device`` ("cpu", "cuda", "cuda:1"), one batch of ``batch_size`` images
    of ``input_size`` pixels, ``threads`` CPU threads (torch's intra-op threads), ``warmup`` untimed passes, the
    median of ``repeats`` timed ones."""

    device: str = "cpu"
    batch_size: int = 1
    input_size: tuple[int, int] = (32, 32)
    threads: int = 1
    warmup: int = 3
    repeats: int = 15

    @property
    def clock(self) -> str:
        """What a pass's time is read from: on one CPU thread, that thread's CPU time (``time.thread_time``), which
        is the pass's latency on an idle core and what a machine loaded by other processes still measures; otherwise
        the wall clock (``time.perf_counter``)."""
        return "thread_cpu" if torch.device(self.device).type == "cpu" and self.threads == 1 else "wall"

    def check(self) -> None:
        for name in ("batch_size", "threads", "warmup", "repeats"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= (0 if name == "warmup" else 1),
                  f"latency {name}={value!r} must be a whole number >= {0 if name == 'warmup' else 1}")
        check(len(self.input_size) == 2 and all(isinstance(s, int) and s >= 1 for s in self.input_size),
              f"latency input_size={self.input_size!r} must be two whole numbers >= 1 (height, width)")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ConfigError(f"latency device {self.device!r} is no torch device; give cpu or cuda") from None
        check(device.type in ("cpu", "cuda"), f"latency device {self.device!r}: give cpu or cuda")
        check(device.type == "cpu" or torch.cuda.is_available(),
              f"latency device {self.device!r}: this machine has no CUDA device; time on cpu or run it there")


def device_name(device: str) -> str:
    """The device's model: the CUDA device's name, or the CPU's model name (``/proc/cpuinfo`` on Linux)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def time_forward(network: nn.Module, x: torch.Tensor, setting: LatencySetting,
                 clock: Callable[[], float] | None = None) -> list[float]:
    """Milliseconds of each of ``setting.repeats`` forward passes of ``network`` on ``x`` after ``setting.warmup``
    untimed ones, on ``setting.threads`` threads, by ``setting.clock`` (or ``clock``, seconds); CUDA is synchronised
    before and after each pass, so a figure is the pass's whole time, not its launch."""
    cuda = x.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = clock or (time.thread_time if setting.clock == "thread_cpu" else time.perf_counter)
    threads = torch.get_num_threads()
    torch.set_num_threads(setting.threads)
    try:
        with torch.inference_mode():
            for _ in range(setting.warmup):
                network(x)
            times = []
            for _ in range(setting.repeats):
                sync()
                start = clock()
                network(x)
                sync()
                times.append(1000 * (clock() - start))
    finally:
        torch.set_num_threads(threads)
    return times


Network = tuple[int, int, dict[str, Any]]
"""What a latency is measured of: ``num_classes``, ``in_chans`` and the options of the space's ``build``."""


def measure_latency(space: SearchSpace, arch: Architecture, network: Network, setting: LatencySetting,
                    timer: Timer = time_forward) -> float:
    """The median milliseconds of one forward pass of ``space.build(arch, num_classes, in_chans, **options)``
    (``network``) in eval mode on ``setting``'s device, uncached."""
    num_classes, in_chans, options = network
    model = space.build(arch, num_classes, in_chans, **options).eval().to(setting.device)
    x = torch.randn(setting.batch_size, in_chans, *setting.input_size, device=setting.device)
    return statistics.median(timer(model, x, setting))


def cache_folder() -> Path:
    """Where latency tables live: ``$LIGHTNING_NAS_LATENCY_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, under
    ``lightning_nas/latency``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lightning_nas" / "latency"


class LatencyTable:
    """The measured latency (ms) of ``space``'s architectures, each built as ``network`` (num_classes, in_chans, the
    options of the space's ``build``) and timed under ``setting``, kept in one CSV under ``folder`` (``cache_folder()`` by default). Calling it on an
    architecture reads the figure or measures and records it; ``measure`` fills many at once."""

    def __init__(self, space: SearchSpace, network: Network = (10, 3, {"C": 16, "N": 5}),
                 setting: LatencySetting = LatencySetting(), folder: str | os.PathLike | None = None,
                 timer: Timer = time_forward) -> None:
        setting.check()
        self.space, self.network, self.setting, self.timer = space, network, setting, timer
        num_classes, in_chans, options = self.network
        self.identity = {"space": space.name, "device": setting.device, "device_name": device_name(setting.device),
                         "torch": torch.__version__, "threads": setting.threads, "batch_size": setting.batch_size,
                         "input_size": list(setting.input_size), "warmup": setting.warmup,
                         "repeats": setting.repeats, "clock": setting.clock, "num_classes": num_classes,
                         "in_chans": in_chans, **options}
        digest = hashlib.sha1(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{setting.device} {self.identity['device_name']}").strip("-")
        name = (f"{space.name}_{slug}_b{setting.batch_size}_t{setting.threads}_{'x'.join(map(str, setting.input_size))}"
                f"_{''.join(f'{name}{value}' for name, value in options.items())}_{digest}.csv")
        self.path = Path(folder).expanduser() if folder is not None else cache_folder()
        self.path = self.path / name
        for other in [table for table in UNSAVED if table.path == self.path]:
            other.save()  # another table of this process holds figures of this file: written first, then read
        self.ms = {key: ms for key, (_, ms) in self._read_rows().items()}
        self._rows: dict[str, str] = {}  # measured here, not yet written: key -> arch text
        self._saved_at = time.monotonic()

    def __call__(self, arch: Architecture) -> float:
        """``arch``'s latency in ms: from the table, or measured now (the file rewritten every ``SAVE_EVERY_S``)."""
        key = self.space.key(arch)
        if key not in self.ms:
            self._record(key, arch)
            if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                self.save()
        return self.ms[key]

    def measure(self, archs: Iterable[Architecture], progress: bool = True) -> dict[str, float]:
        """Every one of ``archs``'s latency by key, measuring those the table lacks (with a progress bar), the file
        rewritten as it goes, so a killed run resumes where it stopped."""
        from tqdm import tqdm

        archs = list(archs)
        missing = {self.space.key(arch): arch for arch in archs if self.space.key(arch) not in self.ms}
        for key, arch in tqdm(missing.items(), desc="latency", unit="net", disable=not progress or not missing):
            self._record(key, arch)
            if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                self.save()
        self.save()
        return {self.space.key(arch): self.ms[self.space.key(arch)] for arch in archs}

    def _record(self, key: str, arch: Architecture) -> None:
        self.ms[key] = round(measure_latency(self.space, arch, self.network, self.setting, self.timer), 4)
        self._rows[key] = self.space.to_string(arch)
        UNSAVED.add(self)

    def _read_rows(self) -> dict[str, tuple[str, float]]:
        """The file's rows, key -> (arch text, ms) (none if it is missing); a file that is not this table is refused in
        one line."""
        if not self.path.is_file():
            return {}

        def corrupt(what: str) -> ConfigError:
            return ConfigError(f"latency cache {self.path} is corrupt ({what}); delete it to measure again")

        lines = self.path.read_text().splitlines()
        if not lines or not lines[0].startswith("# "):
            raise corrupt("no header line")
        try:
            identity = json.loads(lines[0][2:])
        except json.JSONDecodeError:
            raise corrupt("its header is no JSON") from None
        if identity != self.identity:
            raise corrupt("its header names another device or network")
        rows = list(csv.reader(lines[1:]))
        if not rows or rows[0] != COLUMNS:
            raise corrupt(f"its columns are not {','.join(COLUMNS)}")
        table = {}
        for number, row in enumerate(rows[1:], start=3):
            try:
                key, arch, ms = row
                value = float(ms)
            except ValueError:
                raise corrupt(f"line {number} is no key,arch,ms row") from None
            if not (0 < value < math.inf):
                raise corrupt(f"line {number}: {ms} is no positive number of milliseconds")
            table[key] = (arch, value)
        return table

    def save(self) -> None:
        """Write the table atomically, merged with what another process wrote to the file since it was read."""
        self._saved_at = time.monotonic()
        if not self._rows:
            return
        rows = self._read_rows()
        rows.update({key: (arch, self.ms[key]) for key, arch in self._rows.items()})
        buffer = io.StringIO()
        buffer.write(f"# {json.dumps(self.identity, sort_keys=True)}\n")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([key, arch, ms] for key, (arch, ms) in rows.items())
        write_atomic(self.path, buffer.getvalue())
        self.ms.update({key: ms for key, (_, ms) in rows.items()})
        self._rows = {}
        UNSAVED.discard(self)

    def describe(self) -> str:
        """What was timed, in words: ``network``'s size, the device and the setting."""
        s, (_, in_chans, options) = self.setting, self.network
        return (f"{s.device} ({self.identity['device_name']}), batch {s.batch_size}, "
                f"{in_chans}x{s.input_size[0]}x{s.input_size[1]} input, {s.threads} thread(s), "
                f"{' '.join(f'{name}={value}' for name, value in options.items())}, "
                f"median of {s.repeats} after {s.warmup} warm-up, {s.clock} clock")


UNSAVED: set[LatencyTable] = set()
"""The tables of this process holding figures their file lacks: written when another table of the same file is made,
and at exit."""


@atexit.register
def save_all() -> None:
    for table in list(UNSAVED):
        table.save()
