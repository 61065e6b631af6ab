"""A report's search child must not outlive the report: it would go on using the CPU and writing to the search's
folder while the next report resumes the same search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = "import os, time; print(os.getpid(), flush=True); time.sleep(120)"


def alive(pid: int) -> bool:
    """Running and not a zombie (a container's PID 1 may never reap the orphan)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def child_pid(log: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [line for line in (log.read_text().splitlines() if log.exists() else []) if line.isdigit()]
        if pids:
            return int(pids[0])
        time.sleep(0.1)
    raise AssertionError(f"the child never started: {log.read_text() if log.exists() else 'no log'}")


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("guarded", [True, False])
def test_a_search_child_dies_with_its_report_even_when_the_report_is_killed(tmp_path: Path, guarded: bool) -> None:
    log = tmp_path / "search.log"
    # negative control: the same child started by a bare Popen survives its parent's SIGKILL
    start = ("from lightning_nas.quality.searches import run_logged" if guarded else
             "import subprocess; run_logged = (lambda c, f: subprocess.Popen(c, stdout=open(f, 'a')).wait())")
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import pathlib, sys; {start}; run_logged([sys.executable, '-c', {CHILD!r}], "
                               f"pathlib.Path({str(log)!r}))"])
    pid = None
    try:
        pid = child_pid(log)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive(pid) is not guarded
    finally:  # nothing outlives the test, whatever failed
        parent.kill()
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
