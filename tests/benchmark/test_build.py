"""The table builder: a uniform draw trained in one-thread processes, resumable, bound to its budget and code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_nas.benchmark.build import Budget, TableBuild, build_jobs, draw_cells, main
from lightning_nas.benchmark.tables import BenchmarkTable
from lightning_nas.errors import ConfigError
from lightning_nas.spaces import create_space

TINY = ["--data", "DigitsDataModule", "--C", "2", "--steps", "3", "--batch-size", "16", "--heldout", "64"]


def test_the_draw_is_uniform_distinct_and_a_prefix_of_any_longer_draw() -> None:
    space = create_space("nb201")
    cells = draw_cells(space, 400, draw_seed=0)
    keys = [space.key(arch) for arch in cells]
    assert len(set(keys)) == 400
    assert [space.key(a) for a in draw_cells(space, 50, draw_seed=0)] == keys[:50]
    assert keys[:50] != [space.key(a) for a in draw_cells(space, 50, draw_seed=1)]
    first_edge = [arch.ops[0] for arch in cells]  # uniform: each of the 5 ops on about a fifth of the edges
    assert all(50 <= first_edge.count(op) <= 110 for op in space.ops)
    with pytest.raises(ConfigError, match="fewer than 2 distinct cells"):
        draw_cells(create_space("nb201", ops=["none"]), 2, draw_seed=0)


def test_repeats_come_first_and_interleaved() -> None:
    space = create_space("nb201")
    cells = draw_cells(space, 3, draw_seed=0)
    jobs = build_jobs(space, cells, repeats=2)
    assert [seed for _, seed in jobs] == [0, 1, 0, 1, 0]
    assert jobs[0][0] == jobs[1][0] == space.to_string(cells[0])


@pytest.mark.slow
def test_a_build_resumes_grows_and_refuses_another_budget(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "table.csv"
    main(["--cells", "2", "--repeats", "1", "--output", str(output), "--workers", "2", *TINY])
    state = [json.loads(line) for line in output.with_name("table.results.jsonl").read_text().splitlines()]
    assert len(state) == 3 and sorted(r["seed"] for r in state) == [0, 0, 1]
    main(["--cells", "3", "--repeats", "1", "--output", str(output), "--workers", "1", *TINY])
    assert "3 of 4 cells already trained; training 1" in capsys.readouterr().out
    table = BenchmarkTable.read(output, create_space("nb201"), complete=False)
    assert len(table.scores) == 3 and len(table.cpu_s) == 4 and all(c > 0 for c in table.cpu_s)
    assert all(0 <= v <= 100 for v in table.scores.values())
    fingerprint = json.loads(output.with_name("table.results.fingerprint.json").read_text())
    assert fingerprint["budget"]["steps"] == 3 and fingerprint["code"]
    with pytest.raises(SystemExit):
        main(["--cells", "3", "--output", str(output), "--lr", "0.2", *TINY])
    assert "holds results of another configuration (budget.lr 0.1 -> 0.2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--cells", "0"], "--cells must be at least 1"),
    (["--cells", "2", "--repeats", "3"], "--repeats must be between 0 and --cells"),
    (["--cells", "2", "--lr", "nan"], "--lr must be a positive finite number"),
    (["--cells", "2", "--steps", "0"], "--steps must be a whole number >= 1"),
    (["--cells", "2", "--data", "Nope"], "--data 'Nope' is not a data module"),
])
def test_bad_build_options_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                          message: str) -> None:
    with pytest.raises(SystemExit):
        main([*argv, "--output", str(tmp_path / "t.csv")])
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--cells", "0"], "--cells must be at least 1, got 0"),
    (["--cells", "x"], "argument --cells: invalid int value: 'x'"),
    (["--output", "t.csv"], "the following arguments are required: --cells"),
])
def test_a_bad_option_is_one_line(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv if "--output" in argv else [*argv, "--output", "t.csv"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"python -m lightning_nas.benchmark build: error: {message} (see --help)\n"


def test_the_output_must_be_a_csv_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give a .csv path"):
        TableBuild("nb201", Budget(data="DigitsDataModule"), tmp_path / "t.txt")


@pytest.mark.slow
def test_a_build_killed_by_sigkill_takes_its_workers_with_it_and_resumes(tmp_path: Path) -> None:
    """Killed while its worker is inside a cell (cells of 400 steps, several seconds each): the worker dies within a
    second, not after its cell; a restart trains only what the state lacks."""
    import os
    import signal
    import subprocess
    import sys
    import time

    output, state = tmp_path / "table.csv", tmp_path / "table.results.jsonl"
    args = ["--cells", "4", "--output", str(output), *TINY, "--steps", "400"]
    build = subprocess.Popen([sys.executable, "-m", "lightning_nas.benchmark", "build", *args, "--workers", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while (not state.is_file() or not state.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == build.pid]
    assert children, "the build has no worker process"
    build.send_signal(signal.SIGKILL)  # its worker has just started the second cell
    build.wait()
    time.sleep(1.0)
    assert not any(_alive(pid) for pid in children)
    done = {json.loads(line)["key"] for line in state.read_text().splitlines() if line.strip()}
    assert 1 <= len(done) < 4
    main([*args, "--workers", "2"])
    records = [json.loads(line) for line in state.read_text().splitlines()]
    assert len(records) == len({r["key"] for r in records}) == 4  # nothing trained twice, nothing lost
    assert done <= {r["key"] for r in records}


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
