"""Running one search of the report: the strategy's own recipe in a fresh process, and what it leaves behind.

Each search is exactly the command a user would type (``python -m lightning_nas.recipes.<strategy> fit --config
...``, or ``python -m lightning_nas.recipes.blackbox fit --method <method> ...``) plus the seed and an output
folder, so the report measures the recipes users run, and one search cannot leak state (threads, seeds, Lightning
globals) into the next.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lightning_nas.spaces import Architecture, SearchSpace
from lightning_nas.strategies.blackbox import METHODS


@dataclass(frozen=True)
class Strategy:
    """How the report launches a strategy's recipe and reads what it leaves: ``lightning`` searches are one
    LightningModule fit (seeded by ``--seed_everything``, writing run folders under ``--trainer.default_root_dir``
    with a genotype history per epoch); the others are drivers (``--seed``, ``--output_dir``, one ``genotype.json``
    and ``progress.json``). ``space``: the registered space it searches (None: the one its config names)."""

    lightning: bool
    space: str | None


STRATEGIES = {
    "darts": Strategy(lightning=True, space=None),
    "enas": Strategy(lightning=True, space="enas_micro"),
    "pnas": Strategy(lightning=False, space="pnas"),
    **{name: Strategy(lightning=False, space=None) for name in METHODS},  # run by the black-box recipe
}
"""Every strategy the report runs: the one-shot ones and PNAS by recipe name (``python -m
lightning_nas.recipes.<name>``), and every black-box method of ``strategies.blackbox.METHODS``
(``python -m lightning_nas.recipes.blackbox --method <name>``)."""
SIGNAL_WORDS = ("entropy", "reward", "spearman", "uniform", "top1", "best")
"""Logged numbers that show whether a search is searching: α entropy, controller reward and entropy, predictor
Spearman, supernet accuracy, controller samples vs uniform samples, best accuracy so far."""


def search_command(strategy: str, config: str, seed: int, folder: Path, extra: list[str]) -> list[str]:
    """The recipe's command: ``python -m lightning_nas.recipes.<strategy>``, the black-box recipe with ``--method``
    for a black-box method."""
    program = ["lightning_nas.recipes.blackbox", "fit", "--method", strategy] if strategy in METHODS else [
        f"lightning_nas.recipes.{strategy}", "fit"]
    recipe = [sys.executable, "-m", *program, "--config", config]
    if STRATEGIES[strategy].lightning:
        overrides = [f"--seed_everything={seed}", f"--trainer.default_root_dir={folder}"]
    else:
        overrides = [f"--seed={seed}", f"--output_dir={folder}"]
    return [*recipe, *overrides, f"--data.init_args.seed={seed}", *extra]


def run_search(strategy: str, config: str, seed: int, folder: Path, extra: list[str], space: SearchSpace) -> Architecture:
    """Run one search to its end and return the architecture it found. An interrupted Lightning search resumes from
    its last checkpoint (one that had finished only re-exports its genotype); the drivers resume from their results
    files by themselves. The architecture is read in ``space``'s JSON form."""
    command = search_command(strategy, config, seed, folder, extra)
    if STRATEGIES[strategy].lightning:
        checkpoint = newest(folder, "last.ckpt")
        if checkpoint is not None:
            command.append(f"--ckpt_path={checkpoint}")
    folder.mkdir(parents=True, exist_ok=True)
    status = run_logged(command, folder / "search.log")
    if status != 0:
        tail = (folder / "search.log").read_text().strip().splitlines()[-1:]
        raise RuntimeError(f"the {strategy} search with seed {seed} failed (exit {status}): {' '.join(tail)}; "
                           f"its log is {folder / 'search.log'}")
    return space.from_json(genotype_file(strategy, folder).read_text())


def run_logged(command: list[str], log_file: Path) -> int:
    """Run ``command`` with its output appended to ``log_file`` after a line with its start time (UTC) and itself (a
    resumed search's log holds every attempt); return its exit status. The child never outlives the report: it is
    stopped if the report stops waiting (an exception, Ctrl-C), and on Linux the kernel sends it SIGTERM when the
    report dies, even by SIGKILL (a search has no other way to learn that nobody reads its result)."""
    with open(log_file, "a") as log:
        log.write(f"started {datetime.now(timezone.utc).isoformat()}: {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                 preexec_fn=terminate_with_parent if sys.platform == "linux" else None)
        try:
            return child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait()


def terminate_with_parent() -> None:
    """In the forked child, before exec: ask Linux for SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def genotype_file(strategy: str, folder: Path) -> Path:
    if not STRATEGIES[strategy].lightning:
        return folder / "genotype.json"
    file = newest(folder, "genotype.json")
    if file is None:
        raise RuntimeError(f"the {strategy} search in {folder} wrote no genotype.json")
    return file


def newest(folder: Path, name: str) -> Path | None:
    """The most recently written file called ``name`` anywhere under ``folder`` (a search's run folders), if any."""
    files = sorted(folder.rglob(name), key=lambda path: path.stat().st_mtime)
    return files[-1] if files else None


def search_signal(strategy: str, folder: Path) -> dict[str, list[float]]:
    """The search's own signal over time, one series per logged number: per epoch for DARTS and ENAS (their
    genotype history), per level for PNAS (predictor Spearman), per candidate for random search (best so far)."""
    series: dict[str, list[float]] = {}
    if STRATEGIES[strategy].lightning:
        # the newest history, not the one beside the newest genotype.json: a finished search resumed before
        # GenotypeLogger rewrote its history at the end of fit left none in the new run folder
        history = newest(folder, "genotype_history.jsonl")
        rows: list[dict[str, Any]] = [json.loads(line)["metrics"] for line in history.read_text().splitlines()
                                      if line.strip()] if history is not None else []
    else:
        progress = json.loads((folder / "progress.json").read_text())
        rows = progress if isinstance(progress, list) else [{"best_so_far": v} for v in progress["best_so_far"]]
    for row in rows:
        for key, value in row.items():
            if isinstance(value, (int, float)) and any(word in key for word in SIGNAL_WORDS):
                series.setdefault(key, []).append(float(value))
    return series
