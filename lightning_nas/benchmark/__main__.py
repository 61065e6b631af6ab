"""``python -m lightning_nas.benchmark --space nb201 --table nb201-cifar10``: strategies against ground truth.

Black-box strategies (random, evolution, ...) search the space ``--runs`` times (seeds ``--first-seed`` onwards) with
the table as their evaluator (optionally with Gaussian noise standing for training noise); after 10, 50, 100 and
``--queries`` queries each run's incumbent (its best-scored architecture) is read at its true table value. The table
prints, per strategy and budget, the mean and sd over runs, how many runs hold the table's best architecture, and the
difference to random search with a 95 % bootstrap interval.

``--proxy synflow`` (or a vote, ``synflow,jacob_cov``: mean rank) gives the searches a zero-cost proxy looked up in
the proxy table (``--proxy-table``, by default the shipped ``nb201_proxies.csv.gz``), which costs no query:
training-free search (``zero_cost``) needs it, and ``--warm-start N`` adds rows ``evolution+warm`` and ``predictor+warm`` whose first
population or training set is the proxy's best of N draws, each with its interval against the plain row. With
evolution among the strategies, every row also says after how many queries its mean reached evolution's mean at the
full budget.

``--space`` and ``--strategies`` take a space or a black-box search function of the user's own module by its import
path, ``package.module:Name`` (``lightning_nas.plugins``).

One-shot strategies (darts, gdas, betadarts, enas, rsps) run their recipes on NAS-Bench-201's supernet, ``--workers``
searches at a time in processes of one thread, and their derived cells are looked up in a table built here
(``--table nb201-fmnist``; ``benchmark.oneshot``). ``--json`` and ``--plot`` write the results.

``python -m lightning_nas.benchmark build ...`` trains a table (``benchmark.build``); ``... describe --table T``
measures its noise and its agreement with NAS-Bench-201's CIFAR-10 table (``benchmark.describe``); ``... proxies
--table T --proxies synflow,...`` scores its cells by zero-cost proxies and their rank correlation with it
(``benchmark.proxies``); ``... latency`` ranks NAS-Bench-201's networks by parameters, FLOPs and measured latency and
compares a latency budget with a parameter budget (``benchmark.latency``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lightning_nas.benchmark import space_argument
from lightning_nas.benchmark.runs import run_benchmark
from lightning_nas.errors import ConfigError, OneLineParser


def writable_file(parser: argparse.ArgumentParser, flag: str, path: str | None) -> None:
    """Refuse, before any run, an output path that is a folder or whose folder cannot be written."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if Path(path).is_dir():
        parser.error(f"{flag} {path} is a folder; give a file path")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        parser.error(f"{flag} {path}: cannot write in {folder} (missing or read-only); give another path")


def oneshot_plot(path: str, both: bool) -> str:
    """Where the one-shot figure goes: ``--plot`` itself, or beside it (``<stem>_oneshot.png``) when the black-box
    curves take it."""
    return str(Path(path).with_name(f"{Path(path).stem}_oneshot.png")) if both else path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from lightning_nas.benchmark.oneshot import ONE_SHOT
    from lightning_nas.plugins import is_import_path
    from lightning_nas.spaces import SPACES
    from lightning_nas.strategies.blackbox import METHODS, search_method

    known = [*METHODS, *ONE_SHOT]
    parser = OneLineParser(prog="python -m lightning_nas.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="nb201", type=space_argument,
                        help=f"a registered space ({', '.join(sorted(SPACES))}) or one of your own module by its "
                             "import path, package.module:Class")
    parser.add_argument("--table", required=True, help="a shipped table's name (nb201-cifar10, nb201-fmnist, ...) or "
                                                       "a CSV with an architecture column 'arch' and metric columns")
    parser.add_argument("--metric", help="the metric column (needed when the table has several)")
    parser.add_argument("--strategies", default=",".join(name for name, method in METHODS.items()
                                                         if not method.needs_proxy),
                        help=f"comma-separated: {', '.join(known)}, or a black-box search function of your own "
                             "module by its import path, package.module:function")
    parser.add_argument("--queries", type=int, default=150, help="distinct architectures each run may score")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="sd of Gaussian noise added to each look-up")
    parser.add_argument("--max-params", type=float, help="propose only architectures with at most this many parameters")
    parser.add_argument("--max-latency-ms", type=float,
                        help="propose only architectures whose network (C=16, N=5) runs batch 1 of 32x32 images on one "
                             "CPU thread of this machine in at most this many ms (measured once, cached: "
                             "$LIGHTNING_NAS_LATENCY_CACHE, default ~/.cache/lightning_nas/latency)")
    parser.add_argument("--proxy", default="",
                        help="a zero-cost proxy for the searches, looked up in --proxy-table (synflow, params, ...), "
                             "or several, comma-separated, that vote by mean rank; zero_cost and --warm-start need it")
    parser.add_argument("--proxy-table", help="the proxy table: a CSV with an 'arch' column and one per proxy "
                                              "(default: the shipped nb201_proxies.csv.gz)")
    parser.add_argument("--warm-start", type=int, default=0,
                        help="also run evolution and predictor with their first architectures the proxy's best of "
                             "this many uniform draws (rows <name>+warm)")
    parser.add_argument("--data", help="one-shot: the data module the table was trained on (checked against it)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="one-shot: searches at a time, one thread each (default: one per CPU core)")
    parser.add_argument("--workdir", help="one-shot: where the searches run and resume (default: beside --json, "
                                          "else ./benchmark_runs)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a PNG here: black-box best-so-far curves; one-shot, the found cells' "
                                       "scores beside the table's (both: the one-shot one as <stem>_oneshot.png)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.strategies.split(",") if name.strip()]
    unknown = [name for name in names if name not in known and not is_import_path(name)]
    if unknown or not names:
        parser.error(f"unknown strategy {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}, or a "
                     "search function of your own by its import path, package.module:function")
    for name in filter(is_import_path, names):
        try:
            search_method(name)
        except ConfigError as error:
            parser.error(f"--strategies: {error}")
    if args.queries < 1 or args.runs < 1 or args.workers < 1:
        parser.error(f"--queries, --runs and --workers must be at least 1, got {args.queries}, {args.runs} and "
                     f"{args.workers}")
    if args.runs < 2:
        parser.error("--runs must be at least 2: the table reports a spread and an interval over runs")
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0 (seeds are non-negative), got {args.first_seed}")
    for flag in ("max_params", "max_latency_ms"):
        value = getattr(args, flag)
        if value is not None and not 0 < value < float("inf"):
            parser.error(f"--{flag.replace('_', '-')} must be a positive number, got {value}")
    args.proxies = [name.strip() for name in args.proxy.split(",") if name.strip()]
    needy = [name for name in names if name in METHODS and METHODS[name].needs_proxy]
    if (needy or args.warm_start) and not args.proxies:
        parser.error(f"{', '.join(needy) or '--warm-start'} ranks architectures by a zero-cost proxy: pass --proxy "
                     "(a column of the proxy table, e.g. synflow, or several that vote, synflow,jacob_cov)")
    if args.warm_start < 0:
        parser.error(f"--warm-start must be 0 (off) or a number of draws, got {args.warm_start}")
    writable_file(parser, "--json", args.json)
    writable_file(parser, "--plot", args.plot)
    args.blackbox = [name for name in names if name not in ONE_SHOT]
    args.oneshot = [name for name in names if name in ONE_SHOT]
    if args.workdir is None:
        args.workdir = str(Path(args.json).with_name(f"{Path(args.json).stem}_runs")) if args.json else "benchmark_runs"
    return args


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build"]:
        from lightning_nas.benchmark.build import main as build

        build(argv[1:])
        return None
    if argv[:1] == ["proxies"]:
        from lightning_nas.benchmark.proxies import main as proxies

        return proxies(argv[1:])
    if argv[:1] == ["latency"]:
        from lightning_nas.benchmark.latency import main as latency

        return latency(argv[1:])
    if argv[:1] == ["describe"]:
        from lightning_nas.benchmark.describe import main as describe

        return describe(argv[1:])
    args = parse_args(argv)
    from lightning_nas.benchmark.tables import resolve_table
    from lightning_nas.spaces import create_space

    result: dict = {}
    try:
        if args.blackbox:
            from lightning_nas.benchmark.runs import format_table

            result = run_benchmark(args.space, str(resolve_table(args.table)), args.blackbox, args.queries, args.runs,
                                   args.first_seed, args.noise, args.max_params, args.metric, args.proxies,
                                   args.proxy_table, args.warm_start, args.max_latency_ms)
            print(format_table(result))
        if args.oneshot:
            from lightning_nas.benchmark.oneshot import format_oneshot, run_oneshot

            oneshot = run_oneshot(create_space(args.space), args.table, args.oneshot, args.runs, args.first_seed,
                                  args.workers, Path(args.workdir), args.data)
            print(format_oneshot(oneshot))
            strategies = {**result.get("strategies", {}), **oneshot.pop("strategies")}
            result = {**result, "oneshot": oneshot, "strategies": strategies}
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: nothing written (a one-shot run resumes its finished searches from --workdir)",
              file=sys.stderr)
        raise SystemExit(130) from None
    from lightning_nas.files import write_atomic

    if args.json:
        write_atomic(args.json, json.dumps(result, indent=1, allow_nan=False) + "\n")
        print(f"written to {args.json}")
    if args.plot:
        from lightning_nas.plots import best_so_far_figure, figure_png

        if args.blackbox:
            write_atomic(args.plot, figure_png(best_so_far_figure(
                result["curves"], result["runs"], result["table_best"], title=result["title"])))
        if args.oneshot:
            from lightning_nas.benchmark.oneshot import oneshot_png

            write_atomic(oneshot_plot(args.plot, both=bool(args.blackbox)), oneshot_png(result))
        print(f"plot written to {args.plot}")
    return result


if __name__ == "__main__":
    main()
