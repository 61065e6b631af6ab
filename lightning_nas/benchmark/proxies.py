"""``python -m lightning_nas.benchmark proxies --table nb201-cifar10 --proxies synflow,snip,...``: zero-cost proxies
against a benchmark table.

Scores the table's cells by each proxy (``strategies.proxies``: the network at its seeded initialisation, one batch
for the data-dependent ones) in a fixed permutation seeded by ``--order-seed``, so the cells done at any moment are a
uniform sample of the table, in ``--workers`` processes of one thread each. Results go to a JSON Lines file
(``--results``, bound to the settings by a fingerprint beside it) rewritten atomically every ``FLUSH_S`` seconds: a
killed run restarted with the same command scores only the missing cells, the same numbers. ``--csv`` merges this
run's columns into a proxy table (without ``--results``: only the report of that table's scores) (``arch`` and one column a proxy, empty where not computed; a lock guards runs that
share it). The report (printed, ``--json``, ``--plot``) gives each proxy's Spearman rank correlation with the
table's metric over the cells done, their number and a 95 % bootstrap interval.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gzip
import io
import json
import math
import multiprocessing
import os
import random
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

from lightning_nas.errors import ConfigError, OneLineParser, check

FLUSH_S = 20.0
"""How often (seconds) a run rewrites its results file and proxy table: a kill loses at most this much work."""
BOOTSTRAPS = 1000

SHIPPED_SHAPES: dict[str, dict[str, Any]] = {
    "nb201-cifar10": {"num_classes": 10},
    "nb201-cifar100": {"num_classes": 100},
    "nb201-imagenet16": {"num_classes": 120, "input_size": (16, 16)},
}
"""The networks NAS-Bench-201's tables were trained in (C=16, N=5, 3 channels), where they differ from the default."""

_worker: dict[str, Any] = {}


def _start_worker(settings: dict[str, Any]) -> None:
    """Each worker builds the space and the batch once (the same batch in every worker: seeded) on one thread."""
    import ctypes
    import signal

    import torch

    from lightning_nas.benchmark.build import PR_SET_PDEATHSIG

    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    torch.set_num_threads(1)
    _worker.update(prepare(settings))


def prepare(settings: dict[str, Any]) -> dict[str, Any]:
    """The space, network shape and batch a run's settings name."""
    from lightning_nas.spaces import create_space
    from lightning_nas.strategies.proxies import PROXIES, NetworkShape, proxy_batch

    shape = NetworkShape(**{**settings["shape"], "input_size": tuple(settings["shape"]["input_size"])})
    needs = any(PROXIES[name].needs_data for name in settings["proxies"])
    batch = proxy_batch(settings["data"], settings["batch_size"], shape, settings["seed"]) if needs else None
    return {"space": create_space(settings["space"]), "shape": shape, "batch": batch, "settings": settings}


def _score(text: str) -> dict[str, Any]:
    from lightning_nas.strategies.proxies import score_architecture

    space, settings = _worker["space"], _worker["settings"]
    start = time.process_time()
    scores = score_architecture(space, space.from_string(text), settings["proxies"], _worker["shape"],
                                _worker["batch"], settings["seed"], settings["device"])
    return {"key": space.key(space.from_string(text)), "arch": text, **scores,
            "cpu_s": round(time.process_time() - start, 3)}


def encode(value: float) -> float | str:
    """A score as JSON holds it: non-finite ones (jacob_cov's NaN, naswot's -inf) as text."""
    return value if math.isfinite(value) else str(value)


def decode(value: float | str | None) -> float | None:
    return None if value in (None, "") else float(value)


def scored(name: str, records: dict[str, dict[str, Any]], truth: dict[str, float]) -> tuple[list[tuple[float, float]],
                                                                                             int]:
    """The (score, table value) pairs of the cells ``name`` has scored, without NaN scores, and how many were NaN."""
    pairs = [(score, truth[arch]) for arch, record in records.items()
             if (score := decode(record.get(name))) is not None]
    finite = [(score, value) for score, value in pairs if not math.isnan(score)]
    return finite, len(pairs) - len(finite)


def permutation(archs: Sequence[str], order_seed: int) -> list[str]:
    """The table's cells in the run's order: sorted, then shuffled by ``order_seed`` (any prefix a uniform sample)."""
    order = sorted(archs)
    random.Random(order_seed).shuffle(order)
    return order


class ProxyRun:
    """One run's state: its results file (fingerprinted) and, optionally, the proxy table it merges into."""

    def __init__(self, results: str | os.PathLike, settings: dict[str, Any], csv_path: str | None = None) -> None:
        from lightning_nas.strategies.candidates import ResultsFile

        self.file, self.settings, self.csv_path = ResultsFile(results), settings, csv_path
        check(not Path(results).is_dir(), f"--results {results} is a folder; give a .jsonl file path")
        self.file.bind(settings)
        self.records = {record["arch"]: record for record in self.file.read()}

    def flush(self) -> None:
        from lightning_nas.files import write_atomic

        write_atomic(self.file.path, "".join(json.dumps(r) + "\n" for r in self.records.values()))
        if self.csv_path:
            merge_csv(self.csv_path, self.settings["proxies"], self.records, self.settings["table_archs"])

    def run(self, order: Sequence[str], workers: int, prepared: dict[str, Any] | None = None) -> None:
        """Score the cells of ``order`` the results lack; ``prepared``: this process's ``prepare`` of the settings,
        if done (the one-worker run scores here with it)."""
        from tqdm import tqdm

        todo = [text for text in order if text not in self.records]
        print(f"[proxies] {len(order) - len(todo)} of {len(order)} cells already scored; scoring {len(todo)} in "
              f"{workers} one-thread process(es)", flush=True)
        self.flush()
        if not todo:
            return
        last = time.monotonic()
        worker_settings = {k: v for k, v in self.settings.items() if k != "table_archs"}
        try:
            with contextlib.ExitStack() as stack:
                if workers == 1:  # in this process: no start-up of a worker
                    import torch

                    torch.set_num_threads(1)
                    _worker.update({**(prepared or prepare(worker_settings)), "settings": worker_settings})
                    scored: Iterator[dict[str, Any]] = map(_score, todo)
                else:
                    os.environ["OMP_NUM_THREADS"] = "1"
                    pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(
                        workers, _start_worker, (worker_settings,)))
                    scored = pool.imap(_score, todo, chunksize=1)
                progress = stack.enter_context(tqdm(total=len(todo), desc="proxies", unit="cell", mininterval=10))
                for record in scored:
                    self.records[record["arch"]] = {k: encode(v) if isinstance(v, float) and k != "cpu_s" else v
                                                    for k, v in record.items()}
                    progress.update()
                    if time.monotonic() - last > FLUSH_S:
                        self.flush()
                        last = time.monotonic()
        finally:
            self.flush()


def read_csv(path: str | os.PathLike) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A proxy table's columns and its rows by architecture (none if it does not exist)."""
    if not Path(path).is_file():
        return [], {}
    with (gzip.open(path, "rt", newline="") if str(path).endswith(".gz") else open(path, newline="")) as file:
        reader = csv.DictReader(file)
        rows = {row["arch"]: row for row in reader}
        return list(reader.fieldnames or []), rows


def merge_csv(path: str | os.PathLike, proxies: Sequence[str], records: dict[str, dict[str, Any]],
              archs: Sequence[str]) -> None:
    """Rewrite the proxy table at ``path`` (``.csv`` or ``.csv.gz``; a column per proxy of ``PROXIES``) with this run's
    columns from ``records``: a row per cell of ``archs`` in their order, other runs' columns kept, empty where nothing
    is computed yet."""
    from lightning_nas.files import write_atomic
    from lightning_nas.strategies.proxies import PROXIES

    with open(Path(path).with_name(f".{Path(path).name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _, rows = read_csv(path)
        columns = ["arch", *PROXIES]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for arch in archs:
            old, new = rows.get(arch, {}), records.get(arch, {})
            writer.writerow([arch, *[new.get(name, old.get(name, "")) if name in proxies else old.get(name, "")
                                     for name in columns[1:]]])
        data = buffer.getvalue().encode()
        write_atomic(path, gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)


def spearman_report(proxies: Sequence[str], records: dict[str, dict[str, Any]], truth: dict[str, float],
                    seed: int = 0, bootstraps: int = BOOTSTRAPS) -> dict[str, Any]:
    """Per proxy: Spearman with the table's metric over the cells scored (non-finite scores left out, as Abdelfattah
    et al.'s ``nan_policy='omit'``; -inf kept, it ranks lowest), their number, and a 95 % percentile bootstrap
    interval over cells."""
    import numpy as np
    from scipy.stats import spearmanr

    result: dict[str, Any] = {}
    for name in proxies:
        pairs, nan = scored(name, records, truth)
        entry: dict[str, Any] = {"cells": len(pairs), "nan": nan}
        if len(pairs) >= 3:
            scores, accs = np.array(pairs).T
            entry["spearman"] = round(float(spearmanr(scores, accs).statistic), 4)
            rng = np.random.default_rng(seed)
            boots = []
            with warnings.catch_warnings():  # a resample of a few cells may be constant: its rho is NaN, left out
                warnings.simplefilter("ignore")
                for _ in range(bootstraps):
                    pick = rng.integers(0, len(pairs), len(pairs))
                    boots.append(spearmanr(scores[pick], accs[pick]).statistic)
            entry["interval95"] = [round(float(v), 4) for v in np.nanpercentile(boots, [2.5, 97.5])]
        result[name] = entry
    return result


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['table']} ({report['metric']}): Spearman of each proxy over the cells scored "
             f"(network C={report['shape']['C']}, N={report['shape']['N']}; batch: {report['batch']})",
             f"{'proxy':<10} {'cells':>6} {'NaN':>5} {'Spearman':>9}  95 % interval"]
    for name, entry in report["proxies"].items():
        rho = f"{entry['spearman']:+.3f}" if "spearman" in entry else "-"
        interval = "[{:+.3f}, {:+.3f}]".format(*entry["interval95"]) if "interval95" in entry else "-"
        lines.append(f"{name:<10} {entry['cells']:>6} {entry['nan']:>5} {rho:>9}  {interval}")
    return "\n".join(lines)


def proxies_png(proxies: Sequence[str], records: dict[str, dict[str, Any]], truth: dict[str, float],
                report: dict[str, Any]) -> bytes:
    """One panel a proxy: the table's metric against the proxy's rank among the cells scored."""
    import numpy as np
    from matplotlib.figure import Figure
    from scipy.stats import rankdata

    from lightning_nas.plots import figure_png

    columns = min(4, len(proxies))
    rows = math.ceil(len(proxies) / columns)
    figure = Figure(figsize=(3.4 * columns, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).flatten()
    for axis in axes[len(proxies):]:
        axis.set_visible(False)
    for axis, name in zip(axes, proxies):
        pairs, _ = scored(name, records, truth)
        if pairs:
            scores, accs = np.array(pairs).T
            axis.scatter(rankdata(scores) / len(scores), accs, s=2, alpha=0.4)
        entry = report["proxies"][name]
        axis.set_title(f"{name}: ρ={entry.get('spearman', float('nan')):+.2f}, n={entry['cells']}", fontsize=9)
        axis.set(xlabel="proxy rank (fraction)", ylabel=report["metric"])
    return figure_png(figure)


def network_shape(table: str, path: Path, args: Any) -> tuple[dict[str, Any], str | None]:
    """The network a table's cells were trained in (a built table's budget and data module; NAS-Bench-201's C=16,
    N=5 at 32x32 otherwise), overridden by the options given; and the table's data module, if it names one."""
    from lightning_nas.benchmark.build import state_path, table_budget
    from lightning_nas.plugins import data_module_class
    from lightning_nas.strategies.candidates import ResultsFile
    from lightning_nas.strategies.proxies import NetworkShape

    shape, data = {**asdict(NetworkShape()), **SHIPPED_SHAPES.get(table, {})}, None
    if ResultsFile(state_path(path)).fingerprint_path.is_file():
        budget = table_budget(path)
        module: Any = data_module_class(budget.data)
        data = budget.data
        shape.update(C=budget.C, N=budget.N, num_classes=module.num_classes, in_chans=module.input_size[0],
                     input_size=tuple(module.input_size[1:]))
    for name in ("num_classes", "in_chans", "C", "N"):
        if getattr(args, name) is not None:
            shape[name] = getattr(args, name)
    if args.input_size is not None:
        shape["input_size"] = (args.input_size, args.input_size)
    shape["input_size"] = list(shape["input_size"])
    return shape, data


def parse_args(argv: Sequence[str] | None) -> Any:
    from lightning_nas.benchmark import space_argument
    from lightning_nas.benchmark.__main__ import writable_file
    from lightning_nas.strategies.proxies import NOISE, PROXIES

    parser = OneLineParser(prog="python -m lightning_nas.benchmark proxies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="a shipped table's name (nb201-cifar10, ...) or a CSV")
    parser.add_argument("--space", default="nb201", type=space_argument)
    parser.add_argument("--metric", help="the table's metric column (needed when it has several)")
    parser.add_argument("--proxies", required=True, help=f"comma-separated: {', '.join(PROXIES)}")
    parser.add_argument("--data", help=f"the batch of the data-dependent proxies: a data module (default: the one a "
                                       f"built table was trained on) or '{NOISE}' (Gaussian images)")
    parser.add_argument("--batch-size", type=int, default=64, help="images in that batch (default 64, as "
                                                                   "Abdelfattah et al.)")
    parser.add_argument("--cells", type=int, help="score only the first this many cells of the permutation")
    parser.add_argument("--order-seed", type=int, default=0, help="seed of the permutation of the table's cells")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisations and of the batch")
    parser.add_argument("--workers", type=int, default=1, help="processes of one thread each")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    for name in ("num_classes", "in_chans", "C", "N", "input_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, dest=name,
                            help=f"the network's {name} (default: the table's)")
    parser.add_argument("--results", help="the run's results (.jsonl; resumed when it exists); without it, no "
                                          "scoring: the report of the scores in --csv")
    parser.add_argument("--csv", help="merge this run's columns into this proxy table (.csv or .csv.gz)")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--plot", help="write a PNG here: the table's metric against each proxy's rank")
    args = parser.parse_args(argv)
    try:
        from lightning_nas.strategies.proxies import proxy_names

        args.proxy_list = proxy_names(args.proxies)
    except ConfigError as error:
        parser.error(f"--proxies: {error}")
    if args.workers < 1 or (args.cells is not None and args.cells < 1):
        parser.error(f"--workers and --cells must be at least 1, got {args.workers} and {args.cells}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error(f"--device {args.device}: give cpu or cuda")
    for flag in ("json", "plot", "results", "csv"):
        writable_file(parser, f"--{flag}", getattr(args, flag))
    if args.results is None and (args.csv is None or not Path(args.csv).is_file()):
        parser.error("give --results (where to score) or the --csv of an existing proxy table (to report on it)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from lightning_nas.benchmark.tables import BenchmarkTable, resolve_table
    from lightning_nas.spaces import create_space
    from lightning_nas.strategies.candidates import code_key
    from lightning_nas.strategies.proxies import PROXIES

    try:
        space = create_space(args.space)
        path = resolve_table(args.table)
        table = BenchmarkTable.read(path, space, args.metric, complete=False)
        shape, table_data = network_shape(args.table, path, args)
        needs = [name for name in args.proxy_list if PROXIES[name].needs_data]
        data = args.data or table_data
        check(not needs or data is not None or not args.results, f"--data: {', '.join(needs)} need a batch and the table {args.table} "
                                             f"names no data module; give one (e.g. FashionMNISTDataModule) or noise")
        check(not args.device.startswith("cuda") or _cuda(), f"--device {args.device}: no CUDA device here; use cpu")
        archs = table_archs(path, space)
        order = permutation(archs, args.order_seed)[: args.cells]
        settings = {"space": args.space, "table": str(args.table), "proxies": args.proxy_list, "shape": shape,
                    "data": data if needs else None, "batch_size": args.batch_size if needs else None,
                    "seed": args.seed, "order_seed": args.order_seed, "device": args.device.split(":")[0]}
        if args.results:
            run = ProxyRun(args.results, settings, args.csv)
            run.settings = {**settings, "device": args.device, "table_archs": archs}
            prepared = prepare(settings)  # a data module that cannot load fails here, in one line, before any work
            run.run(order, args.workers, prepared)
            records: dict[str, dict[str, Any]] = run.records
        else:
            records = read_csv(args.csv)[1]
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"interrupted: the cells scored are in {args.results}; rerun the same command to resume",
              file=sys.stderr)
        raise SystemExit(130) from None
    truth = {text: table.lookup(space.from_string(text)) for text in archs}
    chosen = set(order)
    done = {arch: record for arch, record in records.items() if arch in chosen}
    cpu_s = [record["cpu_s"] for record in done.values() if "cpu_s" in record]
    report = {"table": str(args.table), "metric": table.metric, "cells_in_table": len(archs), "shape": shape,
              "batch": (f"{args.batch_size} images of {data}" if needs and args.results else
                        f"as {args.csv} was made" if needs else "none (data-free)"),
              "settings": settings, "code": code_key(),
              "cpu_s_per_cell": round(sum(cpu_s) / len(cpu_s), 3) if cpu_s else None,
              "proxies": spearman_report(args.proxy_list, done, truth, args.seed)}
    print(format_report(report))
    from lightning_nas.files import write_atomic

    if args.json:
        write_atomic(args.json, json.dumps(report, indent=1) + "\n")
        print(f"written to {args.json}")
    if args.plot:
        write_atomic(args.plot, proxies_png(args.proxy_list, done, truth, report))
        print(f"plot written to {args.plot}")
    return report


def table_archs(path: str | os.PathLike, space: Any) -> list[str]:
    """The table's distinct cells in their string form, in the table's order (a built table lists a cell per seed)."""
    with (gzip.open(path, "rt", newline="") if str(path).endswith(".gz") else open(path, newline="")) as file:
        texts = [row["arch"] for row in csv.DictReader(file)]
    return list(dict.fromkeys(space.to_string(space.from_string(text)) for text in texts))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
