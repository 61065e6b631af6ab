"""The speed bench's command line: every (case, point) in a fresh worker process, a table, and JSON."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from lightning_nas.errors import ConfigError, OneLineParser
from lightning_nas.files import write_atomic

DEFAULT_BATCHES = {"darts_first": (32, 64), "darts_second": (32, 64), "darts_gdas": (32, 64), "enas_child": (160,), "enas_controller": (160,),
                   "pnas_epoch": (64,), "final_step": (96,)}
"""Our cases (``cases.CASES``) and the batch sizes each runs at by default."""

OFFICIAL = {"darts_first": "official_first", "darts_second": "official_second"}
"""Our DARTS cases and the official code's same step (``official.OFFICIAL_CASES``), for ``--against-official``."""


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m lightning_nas.speed",
        description="Speed and memory of the search and training steps, each case in its own process.",
    )
    cases = ", ".join(DEFAULT_BATCHES)
    parser.add_argument("--cases", default=",".join(DEFAULT_BATCHES), help=f"comma-separated, of: {cases}")
    parser.add_argument("--batch", type=at_least(1), nargs="+", help="batch sizes for every case (default: each case's own)")
    parser.add_argument("--C", type=at_least(1), nargs="+", default=[16], help="DARTS cases: initial channels (default 16)")
    parser.add_argument("--layers", type=at_least(1), nargs="+", default=[8], help="DARTS cases: cells (default 8)")
    parser.add_argument("--steps", type=at_least(1), default=5, help="timed repetitions per case")
    parser.add_argument("--warmup", type=at_least(0), default=1, help="untimed repetitions before them")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (Lightning precision bf16-mixed)")
    parser.add_argument("--channels-last", action="store_true", help="weights and inputs in channels_last")
    parser.add_argument("--compile", nargs="?", const="default", choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile the network in this mode (default: 'default'; 'reduce-overhead' replays "
                             "CUDA graphs)")
    parser.add_argument("--partial-channels", type=at_least(1), default=1,
                        help="PC-DARTS K for darts_first and darts_second, a divisor of --C (1: off)")
    parser.add_argument("--checkpoint-cells", type=at_least(0), default=0,
                        help="DARTS cases: recompute the first k cells in the backward pass (0: off)")
    parser.add_argument("--recompute-ops", action="store_true",
                        help="DARTS cases: candidate ops keep their BN outputs only and recompute the rest")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="DARTS and final_step cases on --device cuda: replay each step as one CUDA graph (use "
                             "--warmup 5: 3 eager steps, then the capture)")
    parser.add_argument("--against-official", action="store_true",
                        help="DARTS cases only: alternate each with the official code's same step, print the ratios")
    parser.add_argument("--official", default=os.environ.get("DARTS_OFFICIAL"),
                        help="a checkout of quark0/darts (default: $DARTS_OFFICIAL)")
    parser.add_argument("--rounds", type=at_least(1), default=2, help="--against-official: alternations per point")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # worker mode: run this one case, print its JSON
    args = parser.parse_args(argv)
    selected = args.cases.split(",")
    unknown = set(selected) - set(DEFAULT_BATCHES) - ({args.case} if args.case else set())
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {cases}")
    if args.against_official:
        if set(selected) - set(OFFICIAL):
            parser.error(f"--against-official compares DARTS cases only: use --cases {','.join(OFFICIAL)}")
        if args.bf16 or args.channels_last or args.compile or args.partial_channels != 1:
            parser.error("--against-official runs the official code as published: drop --bf16, --channels-last, "
                         "--compile and --partial-channels")
    darts = [case for case in selected if case.startswith("darts_")]
    if args.partial_channels != 1 and darts:  # refused here, not in each worker's traceback
        if "darts_gdas" in darts:
            parser.error("--partial-channels is PC-DARTS's, and darts_gdas (GDAS) samples whole channels: drop one of "
                         "them (--cases darts_first,darts_second)")
        if indivisible := [C for C in args.C if C % args.partial_channels]:
            parser.error(f"--partial-channels {args.partial_channels} must divide every --C (each edge mixes C/K of "
                         f"the C channels): {', '.join(map(str, indivisible))} is not a multiple of "
                         f"{args.partial_channels}")
    if args.cuda_graph and (args.device != "cuda" or set(selected) - {"darts_first", "darts_second", "final_step"}):
        parser.error("--cuda-graph replays a step on a GPU: use --device cuda and --cases of darts_first, darts_second "
                     "and final_step")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    return args


def run_worker(args: argparse.Namespace, case: str, batch: int, C: int, layers: int) -> dict[str, Any]:
    """One case at one point in a fresh process (so its peak memory is its own); its record."""
    command = [sys.executable, "-m", "lightning_nas.speed", "--case", case, "--cases", case,
               "--batch", str(batch), "--C", str(C), "--layers", str(layers), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--device", args.device, "--partial-channels", str(args.partial_channels),
               "--checkpoint-cells", str(args.checkpoint_cells)]
    command += ["--recompute-ops"] * args.recompute_ops + ["--cuda-graph"] * args.cuda_graph
    command += ["--bf16"] * args.bf16 + ["--channels-last"] * args.channels_last
    command += ["--compile", args.compile] if args.compile else []
    command += ["--official", args.official] if args.official else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{case} (batch {batch}, C={C}, {layers} cells) failed:\n{done.stderr[-4000:]}")
    record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return record


def point(r: dict[str, Any] | None, case_width: int) -> str:
    """The columns naming a measured point (case, batch, C, cells; '-' where a case has none), or their header."""
    if r is None:
        return f"{'case':<{case_width}} {'batch':>5} {'C':>3} {'cells':>5}"
    return f"{r['case']:<{case_width}} {r['batch']:>5} {r['C'] or '-':>3} {r['layers'] or '-':>5}"


def optional(value: float | None, spec: str) -> str:
    """A value that a worker may not have counted, or '-'."""
    return "-" if value is None else format(value, spec)


def format_table(results: list[dict[str, Any]]) -> str:
    header = (f"{point(None, 16)} {'median s':>9} {'CPU s':>8} {'images/s':>9} {'TFLOP/s':>8} {'peak GB':>8} "
              f"{'kernels':>7} {'syncs':>5}  memory")
    rows = [
        f"{point(r, 16)} {r['median_s']:>9.3f} {r['median_cpu_s']:>8.2f} {r['images_per_s']:>9.1f} "
        f"{optional(r['tflops_per_s'], '.2f'):>8} {r['peak_memory_bytes'] / 1e9:>8.2f} "
        f"{optional(r.get('kernels_per_step'), 'd'):>7} {optional(r.get('syncs_per_step'), 'd'):>5}  {r['memory']}"
        for r in results
    ]
    return "\n".join([header, *rows])


def compare(ours: list[dict[str, Any]], official: list[dict[str, Any]]) -> dict[str, Any]:
    """Ours against the official code at one point, over all rounds: median step seconds over every timed step of
    each side, the largest peak memory of each, and the ratios (speed-up = official / ours, memory = ours / official).
    Each round's speed-up (its two workers ran back to back) shows how far the load of a shared machine moved it."""
    ours_s = statistics.median(t for r in ours for t in r["times_s"])
    official_s = statistics.median(t for r in official for t in r["times_s"])
    ours_peak = max(r["peak_memory_bytes"] for r in ours)
    official_peak = max(r["peak_memory_bytes"] for r in official)
    first = ours[0]
    return {"case": first["case"], "batch": first["batch"], "C": first["C"], "layers": first["layers"],
            "rounds": len(ours), "ours_s": ours_s, "official_s": official_s, "speedup": official_s / ours_s,
            "round_speedups": [o["median_s"] / u["median_s"] for u, o in zip(ours, official)],
            "ours_peak_bytes": ours_peak, "official_peak_bytes": official_peak, "memory_ratio": ours_peak / official_peak,
            "ours_kernels": first.get("kernels_per_step"), "official_kernels": official[0].get("kernels_per_step")}


def format_comparison(rows: list[dict[str, Any]]) -> str:
    header = (f"{point(None, 13)} {'ours s':>7} {'official s':>10} {'speed-up':>8} {'per round':>11} {'ours GB':>7} "
              f"{'official GB':>11} {'memory':>6} {'kernels: ours':>13} {'official':>8}")
    lines = [
        f"{point(r, 13)} {r['ours_s']:>7.2f} {r['official_s']:>10.2f} {r['speedup']:>7.2f}x "
        f"{min(r['round_speedups']):>5.2f}-{max(r['round_speedups']):<5.2f} "
        f"{r['ours_peak_bytes'] / 1e9:>7.2f} {r['official_peak_bytes'] / 1e9:>11.2f} {r['memory_ratio']:>6.2f} "
        f"{optional(r['ours_kernels'], 'd'):>13} {optional(r['official_kernels'], 'd'):>8}"
        for r in rows
    ]
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.case:  # worker
        from lightning_nas.speed.official import OFFICIAL_CASES, run_official

        if args.case in OFFICIAL_CASES:
            print(json.dumps(run_official(args)))
        else:
            from lightning_nas.speed.cases import run_case

            print(json.dumps(run_case(args)))
        return []
    if args.against_official:
        from lightning_nas.speed.official import official_source

        try:
            official_source(args.official)
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None
    results, comparisons = [], []
    for case in args.cases.split(","):
        for batch, C, layers in itertools.product(args.batch or DEFAULT_BATCHES[case], args.C, args.layers):
            if not args.against_official:
                results.append(run_worker(args, case, batch, C, layers))
                print(format_table(results[-1:]).splitlines()[-1], flush=True)
                continue
            sides: dict[str, list[dict[str, Any]]] = {case: [], OFFICIAL[case]: []}
            for round_ in range(args.rounds):  # alternate which side goes first, so drifting load hits both alike
                for side in (case, OFFICIAL[case])[:: 1 if round_ % 2 == 0 else -1]:
                    sides[side].append(run_worker(args, side, batch, C, layers))
                    print(format_table(sides[side][-1:]).splitlines()[-1], flush=True)
            results += sides[case] + sides[OFFICIAL[case]]
            comparisons.append(compare(sides[case], sides[OFFICIAL[case]]))
    print(format_table(results))
    if comparisons:
        print(format_comparison(comparisons))
    if args.json:
        write_atomic(args.json, json.dumps({"uptime_load": os.getloadavg(), "results": results,
                                            "against_official": comparisons}, indent=2))
    return results
