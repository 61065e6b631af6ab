"""Speed and memory of the search and training steps: ``python -m lightning_nas.speed --help``. (How good the
searches' results are, against ground-truth tables, is ``lightning_nas.benchmark``.)

Each (case, point) runs in a fresh worker process, so its peak memory (``ru_maxrss``; on a GPU
``torch.cuda.max_memory_allocated``) belongs to it alone. The figure is the median over ``--steps`` timed repetitions
after ``--warmup`` untimed ones. ``--against-official`` runs the official DARTS code's same step beside ours,
alternating in fresh processes on the same random data, and prints the ratios: on a shared machine absolute seconds
swing 2x, ratios from one run are what counts. Results print as a table and, with ``--json``, are written atomically.
"""

from lightning_nas.speed.cli import main

__all__ = ["main"]
