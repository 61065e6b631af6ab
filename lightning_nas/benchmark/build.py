"""``python -m lightning_nas.benchmark build``: a benchmark table of a registered space, trained here.

Trains a uniform draw of the space's cells (the first ``--cells`` distinct cells of a stream seeded by
``--draw-seed``, so a larger ``--cells`` grows a table without retraining it; ``--max-params`` and ``--max-latency-ms``
draw only cells within that budget) in ``--workers`` processes of one thread
each, every cell under one budget (``Budget``: the proxy network, steps, images, lr) and scored on held-out
training images. The first ``--repeats`` cells are also trained with a second seed, to measure the table's noise.

The state is a results file beside the table (``<table>.results.jsonl``, one finished cell a line, written
atomically) bound to a fingerprint (``<table>.results.fingerprint.json``: the budget, the data module and the code key of the
code that computes the numbers): a killed build restarted with the same command trains only what is missing; a
restart under another budget or code is refused in one line. After every cell the CSV (columns ``arch``, the metric,
``seed``, ``budget``, ``cpu_s``) is rewritten atomically, in the form ``--table`` reads.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import hashlib
import io
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from lightning_nas.errors import ConfigError, OneLineParser, check

METRIC = "heldout_acc"
"""The table's score column: top-1 accuracy in percent on the held-out training images."""


@dataclass(frozen=True)
class Budget:
    """What one cell's training costs and sees: its network (``C`` channels, ``N`` cells per stage), ``steps`` SGD
    steps (one epoch of that many batches) of ``batch_size`` images with a per-step cosine from ``lr`` to 0, scored
    once, at the end, on ``heldout`` training images that it never trains on."""

    data: str = "FashionMNISTDataModule"
    C: int = 8
    N: int = 1
    steps: int = 100
    batch_size: int = 128
    lr: float = 0.1
    heldout: int = 2000

    def check(self) -> None:
        for name in ("C", "N", "steps", "batch_size", "heldout"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"--{name.replace('_', '-')} must be a whole number >= 1, "
                                                        f"got {value}")
        check(self.lr > 0 and self.lr == self.lr and self.lr != float("inf"),
              f"--lr must be a positive finite number, got {self.lr}")

    def proxy(self) -> Any:
        """The budget as every candidate's (``ProxyBudget``): one epoch of ``steps`` batches, the cosine per step."""
        from lightning_nas.strategies.candidates import ProxyBudget

        return ProxyBudget(N=self.N, F=self.C, epochs=1, lr=self.lr, lr_interval="step", limit_train_batches=self.steps)

    def data_module(self) -> Any:
        from lightning_nas.plugins import data_module_class

        return data_module_class(self.data)(mode="eval", batch_size=self.batch_size, val_split=self.heldout, seed=0)


def budget_id(fingerprint: dict[str, Any]) -> str:
    """A short name of a fingerprint, the table's ``budget`` column."""
    return hashlib.sha1(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:8]


def draw_cells(space: Any, count: int, draw_seed: int) -> list[Any]:
    """The first ``count`` distinct architectures of a uniform stream seeded by ``draw_seed`` (a prefix of any longer
    draw), as random search draws them."""
    from lightning_nas.strategies.blackbox_search import sample_architectures

    return list(sample_architectures(space, count, draw_seed).values())


_worker: dict[str, Any] = {}
PR_SET_PDEATHSIG = 1
"""prctl's option: the signal a process gets when its parent dies."""


def _start_worker(space_name: str, budget: Budget, state: str) -> None:
    """Each worker builds the data module and pool once and trains on one thread. On Linux it is killed with its
    parent (a killed build leaves no worker training on)."""
    import torch

    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    torch.set_num_threads(1)
    _worker["pool"] = _pool(space_name, budget, state)


def _pool(space_name: str, budget: Budget, state: str) -> Any:
    from lightning_nas.spaces import create_space
    from lightning_nas.strategies.candidates import CandidatePool

    data = budget.data_module()
    return CandidatePool(data, state, budget.proxy(), accelerator="cpu", space=create_space(space_name), label="table")


def _train(job: tuple[str, int]) -> dict[str, Any]:
    """Train one (cell string, seed); the record carries the worker's CPU-seconds for it."""
    text, seed = job
    pool = _worker["pool"]
    arch = pool.space.from_string(text)
    start = time.process_time()
    _, record = pool.train(f"{pool.space.key(arch)}@{seed}", arch, seed=seed)
    return {"key": record["key"], "arch": text, "seed": seed, METRIC: round(100 * record["accuracy"], 2),
            "cpu_s": round(time.process_time() - start, 2), "seconds": record["seconds"]}


class TableBuild:
    """One table's build state: its pool (fingerprint, lock, results file) and the CSV view of it."""

    def __init__(self, space_name: str, budget: Budget, output: str | os.PathLike) -> None:
        budget.check()
        self.space_name, self.budget, self.output = space_name, budget, Path(output)
        check(self.output.suffix == ".csv", f"--output {output}: give a .csv path (its state is kept beside it)")
        check(not self.output.is_dir(), f"--output {output} is a folder; give a .csv file path")
        self.state = state_path(self.output)
        self.pool = _pool(space_name, budget, str(self.state))
        self.pool.settings = {"space": space_name, "budget": asdict(budget), "code": code_key()}

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.pool.fingerprint

    def finished(self) -> dict[str, dict[str, Any]]:
        return self.pool.finished()

    def run(self, jobs: Sequence[tuple[str, int]], workers: int) -> dict[str, dict[str, Any]]:
        """Train the jobs the state lacks, ``workers`` processes of one thread each; every finished cell is appended
        at once and the CSV rewritten, so a kill loses at most the cells in training."""
        from tqdm import tqdm

        space = self.pool.space
        with self.pool.running():
            done = self.finished()
            todo = [job for job in jobs if f"{space.key(space.from_string(job[0]))}@{job[1]}" not in done]
            self.write_csv()
            if todo:
                print(f"[table] {len(jobs) - len(todo)} of {len(jobs)} cells already trained; training {len(todo)} "
                      f"in {workers} one-thread processes (budget {budget_id(self.fingerprint)})", flush=True)
                context = multiprocessing.get_context("spawn")
                os.environ["OMP_NUM_THREADS"] = "1"
                with context.Pool(workers, _start_worker, (self.space_name, self.budget, str(self.state))) as pool, \
                        tqdm(total=len(todo), desc="table", unit="cell") as progress:
                    for record in pool.imap_unordered(_train, todo):
                        self.pool.results.append(record)
                        self.write_csv()
                        progress.set_postfix_str(f"{record[METRIC]:.2f} ({record['cpu_s']:.0f} CPU-s)")
                        progress.update()
        return self.finished()

    def write_csv(self) -> None:
        from lightning_nas.files import write_atomic

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["arch", METRIC, "seed", "budget", "cpu_s"])
        budget = budget_id(self.fingerprint)
        for record in self.finished().values():
            writer.writerow([record["arch"], record[METRIC], record["seed"], budget, record["cpu_s"]])
        write_atomic(self.output, buffer.getvalue())


def state_path(table: Path) -> Path:
    """Where a built table keeps its results; its fingerprint lies beside them (``ResultsFile.fingerprint_path``)."""
    return table.with_name(f"{table.stem}.results.jsonl")


def table_budget(table: Path) -> Budget:
    """The budget a built table's cells were trained under, read from its fingerprint."""
    from lightning_nas.strategies.candidates import ResultsFile

    path = ResultsFile(state_path(table)).fingerprint_path
    check(path.is_file(), f"{table} has no budget beside it ({path.name}): give a table made by "
                          f"`python -m lightning_nas.benchmark build`")
    return Budget(**json.loads(path.read_text())["budget"])


def code_key() -> str:
    from lightning_nas.strategies.candidates import code_key as key

    return key()


def budgeted(build: TableBuild, max_params: float | None, max_latency_ms: float | None) -> Any:
    """The build's space restricted to cells whose table network (the budget's C and N, the data's classes and
    images) has at most ``max_params`` parameters and runs batch 1 on one CPU thread in ``max_latency_ms``."""
    from lightning_nas.spaces.latency import LatencySetting, LatencyTable

    space, data = build.pool.space, build.pool.data
    options = build.budget.proxy().network(space)
    latency = None if max_latency_ms is None else LatencyTable(
        space, (data.num_classes, data.in_chans, options), LatencySetting(input_size=(data.input_size[1], data.input_size[2])))
    return space.with_budget(max_params, max_latency_ms, data.num_classes, data.in_chans, latency=latency, **options)


def build_jobs(space: Any, cells: Sequence[Any], repeats: int, seeds: tuple[int, int] = (0, 1),
               added: Iterable[Any] = ()) -> list[tuple[str, int]]:
    """Cell i with seed 0, and with seed 1 too for the first ``repeats`` cells (interleaved, so a partial build has
    its noise measured); ``added`` cells (e.g. searches' answers) with seed 0."""
    jobs: list[tuple[str, int]] = []
    for index, arch in enumerate([*cells, *added]):
        jobs.append((space.to_string(arch), seeds[0]))
        if index < repeats:
            jobs.append((space.to_string(arch), seeds[1]))
    return list(dict.fromkeys(jobs))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from lightning_nas.benchmark import space_argument
    from lightning_nas.spaces import SPACES

    defaults = Budget()
    parser = OneLineParser(prog="python -m lightning_nas.benchmark build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="nb201", type=space_argument,
                        help=f"a registered space ({', '.join(sorted(SPACES))}) or one of your own module by its "
                             "import path, package.module:Class")
    parser.add_argument("--data", default=defaults.data, help="a data module of lightning_nas.data, or one of your "
                                                              "own module by its import path, package.module:Class")
    parser.add_argument("--cells", type=int, required=True, help="how many distinct uniformly drawn cells")
    parser.add_argument("--output", required=True, help="the table's CSV path (its state is kept beside it)")
    parser.add_argument("--draw-seed", type=int, default=0, help="seed of the uniform draw of cells")
    parser.add_argument("--repeats", type=int, default=0, help="how many of the first cells also train with seed 1")
    parser.add_argument("--add", action="append", default=[], help="also train this cell (string form); repeatable")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)),
                        help="processes of one thread each (default: one per CPU core)")
    for name in ("C", "N", "steps", "batch_size", "heldout"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                            dest=name, help=f"budget: {name} (default {getattr(defaults, name)})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"budget: peak lr (default {defaults.lr})")
    parser.add_argument("--max-params", type=float, help="draw only cells whose network has at most this many "
                                                         "parameters")
    parser.add_argument("--max-latency-ms", type=float,
                        help="draw only cells whose network runs batch 1 of the data's images on one CPU thread of "
                             "this machine in at most this many ms (measured once, cached: spaces.latency)")
    args = parser.parse_args(argv)
    for flag in ("max_params", "max_latency_ms"):
        value = getattr(args, flag)
        if value is not None and not 0 < value < float("inf"):
            parser.error(f"--{flag.replace('_', '-')} must be a positive number, got {value}")
    for name in ("cells", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.repeats < 0 or args.repeats > args.cells:
        parser.error(f"--repeats must be between 0 and --cells ({args.cells}), got {args.repeats}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        budget = Budget(args.data, args.C, args.N, args.steps, args.batch_size, args.lr, args.heldout)
        build = TableBuild(args.space, budget, args.output)
        space = build.pool.space
        added = [space.from_string(text) for text in args.add]
        jobs = build_jobs(space, draw_cells(budgeted(build, args.max_params, args.max_latency_ms), args.cells,
                                            args.draw_seed), args.repeats, added=added)
        records = build.run(jobs, args.workers)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{len(records)} cells trained under budget {budget_id(build.fingerprint)}; table written to {args.output}")
