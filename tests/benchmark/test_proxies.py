"""The proxies command: a seeded permutation of a table's cells, resumable results, a merged proxy table, refusals
before any work, and the Spearman report."""

from __future__ import annotations

import csv
import gzip
import json
import math
import shutil
from pathlib import Path

import pytest

from lightning_nas.benchmark.__main__ import main
from lightning_nas.benchmark.proxies import merge_csv, permutation, spearman_report
from lightning_nas.benchmark.tables import FOLDER, resolve_table
from lightning_nas.spaces import create_space
from lightning_nas.spaces.nb201.cell import NB201_EDGES
from lightning_nas.strategies.proxies import PROXIES

TINY = ["--C", "2", "--N", "1", "--input-size", "8", "--data", "noise", "--batch-size", "4"]


def records(path: Path) -> dict[str, dict]:
    """A results file's scores by cell, without the CPU time (which varies run to run)."""
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record.pop("cpu_s")
        out[record["arch"]] = record
    return out


def test_a_killed_run_resumed_gives_the_uninterrupted_runs_scores(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    proxies = ["--proxies", "synflow,naswot,params"]
    whole = tmp_path / "whole.jsonl"
    main(["proxies", "--table", "nb201-cifar10", *proxies, "--cells", "4", "--results", str(whole), *TINY])
    done = records(whole)
    assert len(done) == 4 and all(set(r) == {"key", "arch", "synflow", "naswot", "params"} for r in done.values())
    killed = tmp_path / "killed.jsonl"  # a kill after two cells (and mid-line in a third)
    lines = whole.read_text().splitlines(keepends=True)
    killed.write_text("".join(lines[:2]) + lines[2][:20])
    shutil.copy(whole.with_name("whole.fingerprint.json"), killed.with_name("killed.fingerprint.json"))
    capsys.readouterr()
    with pytest.warns(UserWarning, match="truncated last line"):
        report = main(["proxies", "--table", "nb201-cifar10", *proxies, "--cells", "4", "--results", str(killed),
                       "--workers", "2", *TINY])
    assert "2 of 4 cells already scored; scoring 2 in 2" in capsys.readouterr().out
    assert list(records(killed).items()) == list(done.items())  # the same file: numbers and order, other processes
    assert report["proxies"]["params"]["cells"] == 4
    with gzip.open(resolve_table("nb201-cifar10"), "rt") as file:
        cells = [row["arch"] for row in csv.DictReader(file)]
    assert list(done) == permutation(cells, 0)[:4] != cells[:4]  # the first of the seeded permutation, in its order
    with pytest.raises(SystemExit):  # another configuration is refused, not mixed in
        main(["proxies", "--table", "nb201-cifar10", *proxies, "--cells", "4", "--results", str(killed),
              "--seed", "1", *TINY])
    assert "holds results of another configuration (seed 0 -> 1)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--table", "nb201-cifar10", "--proxies", "synflow,zen"], "--proxies: unknown proxy zen; known: synflow"),
    (["--table", "nb201-cifar10", "--proxies", "synflow", "--space", "darts"],
     "is not an architecture of the darts space"),
    (["--table", "nb201-cifar10", "--proxies", "snip"], "--data: snip need a batch and the table nb201-cifar10 names "
                                                         "no data module"),
    (["--table", "nb201-cifar10", "--proxies", "synflow", "--device", "tpu"], "--device tpu: give cpu or cuda"),
])
def test_bad_input_is_refused_in_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          argv: list[str], message: str) -> None:
    results = tmp_path / "r.jsonl"
    with pytest.raises(SystemExit):
        main(["proxies", *argv, "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) <= 2  # argparse adds its usage line
    assert not results.exists()


def test_without_results_it_reports_on_a_proxy_table_and_needs_one(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["proxies", "--table", "nb201-cifar10", "--proxies", "synflow", "--csv", str(tmp_path / "none.csv")])
    assert "give --results (where to score) or the --csv of an existing proxy table" in capsys.readouterr().err
    with gzip.open(resolve_table("nb201-cifar10"), "rt") as file:
        rows = list(csv.DictReader(file))
    merge_csv(tmp_path / "p.csv", ["params"], {row["arch"]: {"params": row["cifar10_test_acc_200ep"]}
                                               for row in rows[:40]}, [row["arch"] for row in rows])
    report = main(["proxies", "--table", "nb201-cifar10", "--proxies", "params,snip", "--csv", str(tmp_path / "p.csv")])
    assert report["proxies"]["params"] == {"cells": 40, "nan": 0, "spearman": 1.0, "interval95": [1.0, 1.0]}
    assert report["proxies"]["snip"] == {"cells": 0, "nan": 0}  # nothing computed: no figure


def test_runs_merge_their_columns_into_one_proxy_table(tmp_path: Path) -> None:
    path = tmp_path / "p.csv.gz"
    archs = ["a", "b", "c"]
    merge_csv(path, ["synflow"], {"a": {"synflow": 1.5}, "b": {"synflow": 2.5}}, archs)
    merge_csv(path, ["snip", "jacob_cov"], {"b": {"snip": 3.0, "jacob_cov": "nan"}}, archs)
    with gzip.open(path, "rt") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["arch", *PROXIES] == ["arch", "synflow", "snip", "grad_norm", "jacob_cov", "naswot", "params",
                                             "flops"]
    assert rows[1:] == [["a", "1.5", "", "", "", "", "", ""], ["b", "2.5", "3.0", "", "nan", "", "", ""],
                        ["c", "", "", "", "", "", "", ""]]


def test_spearman_report_on_planted_proxies() -> None:
    truth = {str(i): float(i) for i in range(50)}
    done = {a: {"up": v, "down": -v, "half": v if v < 25 else "nan", "flat": 0.0} for a, v in truth.items()}
    report = spearman_report(["up", "down", "half"], done, truth, bootstraps=200)
    assert report["up"] == {"cells": 50, "nan": 0, "spearman": 1.0, "interval95": [1.0, 1.0]}
    assert report["down"]["spearman"] == -1.0
    assert report["half"]["cells"] == 25 and report["half"]["nan"] == 25  # NaN left out, as the authors' omit
    noisy = {a: {"x": (int(a) * 7919) % 50} for a in truth}  # a scrambled proxy: an interval around 0
    low, high = spearman_report(["x"], noisy, truth, bootstraps=200)["x"]["interval95"]
    assert low < 0 < high


def test_the_shipped_proxy_table_lists_every_cell_of_nb201() -> None:
    path = FOLDER / "nb201_proxies.csv.gz"
    with gzip.open(path, "rt") as file:
        rows = list(csv.DictReader(file))
    with gzip.open(resolve_table("nb201-cifar10"), "rt") as file:
        cells = [row["arch"] for row in csv.DictReader(file)]
    assert list(rows[0]) == ["arch", *PROXIES] and [row["arch"] for row in rows] == cells
    assert all(math.isfinite(float(row["params"])) and float(row["params"]) > 0 for row in rows)
    space = create_space("nb201")
    for row in rows:  # synflow is complete, and zero exactly where no path joins the cell's input to its output
        arch, reached = space.from_string(row["arch"]), {0}
        for (node, source), op in zip(NB201_EDGES, arch.ops):
            if source in reached and op != "none":
                reached.add(node)
        assert (float(row["synflow"]) > 0) == (3 in reached) and math.isfinite(float(row["synflow"]))
