"""``python -m lightning_nas.benchmark --space nb201 --table TABLE.csv``: black-box strategies against ground truth.

Every strategy searches the space ``--runs`` times (seeds ``--first-seed`` onwards) with the table as its evaluator
(optionally with Gaussian noise standing for training noise); after 10, 50, 100 and ``--queries`` queries each run's
incumbent (its best-scored architecture) is read at its true table value. The table prints, per strategy and
budget, the mean and sd over runs, how many runs hold the table's best architecture, and the difference to random
search with a 95 % bootstrap interval; ``--json`` and ``--plot`` write them.
"""

from __future__ import annotations

import argparse
import json
import sys

from lightning_nas.benchmark.runs import CHECKPOINTS, run_benchmark
from lightning_nas.errors import ConfigError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from lightning_nas.spaces import SPACES
    from lightning_nas.strategies.blackbox import STRATEGIES

    parser = argparse.ArgumentParser(prog="python -m lightning_nas.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="nb201", choices=sorted(SPACES))
    parser.add_argument("--table", required=True, help="CSV with an architecture column 'arch' and metric columns")
    parser.add_argument("--metric", help="the metric column (needed when the table has several)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated: {', '.join(STRATEGIES)}")
    parser.add_argument("--queries", type=int, default=150, help="distinct architectures each run may score")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="sd of Gaussian noise added to each look-up")
    parser.add_argument("--max-params", type=float, help="propose only architectures with at most this many parameters")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a PNG of best-so-far curves here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.strategies.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        parser.error(f"unknown strategy {', '.join(unknown) or '(none given)'}; known: {', '.join(STRATEGIES)}")
    if args.queries < 1 or args.runs < 1:
        parser.error(f"--queries and --runs must be at least 1, got {args.queries} and {args.runs}")
    if args.runs < 2:
        parser.error("--runs must be at least 2: the table reports a spread and an interval over runs")
    args.strategies = names
    return args


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build"]:
        from lightning_nas.benchmark.build import main as build

        build(argv[1:])
        return None
    args = parse_args(argv)
    try:
        result = run_benchmark(args.space, args.table, args.strategies, args.queries, args.runs, args.first_seed,
                               args.noise, args.max_params, args.metric)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    from lightning_nas.benchmark.runs import format_table

    print(format_table(result))
    if args.json:
        from lightning_nas.files import write_atomic

        write_atomic(args.json, json.dumps(result, indent=1) + "\n")
        print(f"written to {args.json}")
    if args.plot:
        from lightning_nas.files import write_atomic
        from lightning_nas.plots import best_so_far_png

        write_atomic(args.plot, best_so_far_png(result["curves"], result["table_best"], title=result["title"]))
        print(f"plot written to {args.plot}")
    return result


if __name__ == "__main__":
    main()
