"""Random search: the baseline every NAS method must beat (Li & Talwalkar, 2019; the PNAS paper's random baseline).

Draws ``num_samples`` architectures uniformly from a search space (DARTS cells, ENAS micro cells or PNAS cells of
``nodes`` blocks), trains each as a proxy network exactly like a PNAS candidate (``CandidatePool``: same proxy
network, results file, resume and multi-process sharing), scores it on the held-out images and returns the best.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Literal, Sequence

from lightning_nas.data import NASDataModule
from lightning_nas.errors import check
from lightning_nas.genotypes import Genotype
from lightning_nas.files import write_atomic
from lightning_nas.ops import DARTS_PRIMITIVES, ENAS_MICRO_OPS, PNAS_OPS, check_op_name
from lightning_nas.spaces.darts import random_genotype
from lightning_nas.spaces.enas_micro import random_architecture
from lightning_nas.spaces.pnas import random_cell
from lightning_nas.strategies.candidates import CandidatePool, LRInterval
from lightning_nas.strategies.ranks import Ranks

Space = Literal["darts", "enas", "pnas"]
SPACE_DEFAULTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "darts": (4, DARTS_PRIMITIVES),
    "enas": (5, ENAS_MICRO_OPS),
    "pnas": (5, PNAS_OPS),
}
"""Per space: nodes per cell (PNAS: blocks, B) and candidate ops, as the strategy searching it uses by default."""


def sample_architecture(space: Space, rng: random.Random, nodes: int, ops: Sequence[str]) -> Genotype:
    """One architecture drawn uniformly from ``space``, as the Genotype that final networks stack."""
    if space == "darts":
        return random_genotype(rng, nodes, ops)
    if space == "enas":
        return random_architecture(rng, nodes, ops).to_genotype()
    return random_cell(rng, nodes, ops).to_genotype()


def architecture_key(genotype: Genotype) -> str:
    """A short name for a genotype, stable across runs: the results file and the training seed use it."""
    return hashlib.sha1(genotype.to_json().encode()).hexdigest()[:16]


def sample_architectures(
    space: Space, count: int, seed: int, nodes: int | None = None, ops: Sequence[str] | None = None
) -> dict[str, Genotype]:
    """``count`` distinct architectures drawn from ``space``, a function of ``seed`` alone."""
    default_nodes, default_ops = SPACE_DEFAULTS[space]
    rng = random.Random(seed)
    drawn: dict[str, Genotype] = {}
    for _ in range(100 * count):
        if len(drawn) == count:
            break
        genotype = sample_architecture(space, rng, nodes or default_nodes, tuple(ops or default_ops))
        drawn.setdefault(architecture_key(genotype), genotype)
    check(len(drawn) == count, f"the {space} space with these ops and nodes holds fewer than {count} distinct cells")
    return drawn


class RandomSearch:
    """Random search over ``space``: train ``num_samples`` uniformly drawn architectures, keep the best.

    ``data`` must be an eval-mode data module with ``val_split`` > 0 (candidates are scored on held-out images, never
    on the test set). ``nodes``/``ops`` default to the space's own (``SPACE_DEFAULTS``). A restarted search with the
    same arguments skips every finished candidate; under ``torchrun`` the ranks share the candidates.
    """

    def __init__(
        self,
        data: NASDataModule,
        output_dir: str = "runs/random",
        space: Space = "darts",
        num_samples: int = 8,
        nodes: int | None = None,
        ops: Sequence[str] | None = None,
        N: int = 2,
        F: int = 24,
        epochs: int = 20,
        lr: float = 0.025,
        lr_interval: LRInterval = "epoch",
        limit_train_batches: int | float = 1.0,
        accelerator: str = "auto",
        num_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        check(space in SPACE_DEFAULTS, f"space={space!r} is not a search space; use one of {', '.join(SPACE_DEFAULTS)}")
        check(num_samples >= 1, f"num_samples={num_samples} must be at least 1: it is how many architectures to train")
        check(nodes is None or nodes >= 1, f"nodes={nodes} must be at least 1 (or left out for the space's default)")
        check(ops is None or len(ops) > 0, "ops is empty: name at least one candidate op, or leave it out")
        for op in ops or ():
            check_op_name(op)
        for name, value in (("N", N), ("F", F), ("epochs", epochs)):
            check(value >= 1, f"{name}={value} must be at least 1")
        check(data.mode == "eval" and data.val_split > 0,
              "random search scores candidates on held-out images: give the data module mode=eval and val_split > 0")
        self.space, self.num_samples, self.nodes, self.ops, self.seed = space, num_samples, nodes, ops, seed
        self.output_dir, self.num_threads = Path(output_dir), num_threads
        self.pool = CandidatePool(data, self.output_dir / "results.jsonl", N, F, epochs, lr, limit_train_batches,
                                  accelerator, seed, label="random search", lr_interval=lr_interval)

    def architectures(self) -> dict[str, Genotype]:
        return sample_architectures(self.space, self.num_samples, self.seed, self.nodes, self.ops)

    def run(self) -> Genotype:
        """Run (or resume) the search; write the best architecture to ``genotype.json`` and return it."""
        import torch

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.pool.ranks = Ranks.launch("random")
        architectures = self.architectures()
        results = self.pool.train_all(
            "random search", list(architectures), lambda key: self.pool.train(key, architectures[key])[1]
        )
        best = max(results, key=lambda key: (results[key]["accuracy"], key))
        genotype = architectures[best]
        if self.pool.ranks.rank == 0:
            accuracies = [results[key]["accuracy"] for key in architectures]
            best_so_far = [max(accuracies[: i + 1]) for i in range(len(accuracies))]
            summary = {"space": self.space, "best_key": best, "best_accuracy": results[best]["accuracy"],
                       "accuracies": accuracies, "best_so_far": best_so_far}
            write_atomic(self.output_dir / "progress.json", json.dumps(summary, indent=1))
            path = genotype.save(self.output_dir / "genotype.json")
            print(f"[random search] best of {len(results)} (held-out accuracy {results[best]['accuracy']:.4f}):\n"
                  f"{genotype}\nwritten to {path}", flush=True)
        return genotype
