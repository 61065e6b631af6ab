"""Black-box searches with proxy training as their evaluator: the recipes of random search (Li & Talwalkar, 2019; the
baseline every NAS method must beat), regularized evolution, REINFORCE, predictor-guided and local search.

``BlackBoxSearch`` runs one method of ``blackbox.METHODS`` (``method``, by name) over a registered space, every
architecture it proposes trained as a proxy network exactly like a PNAS candidate (``CandidatePool``: same proxy
network, results file, resume and multi-process sharing), scored on held-out images; it writes the best to
``genotype.json``. The strategies are deterministic given the seed and every result stays in the results file, so a
restarted search replays its proposals from that file and trains only what is missing; under ``torchrun`` the ranks
share each batch of proposals (all of random search's samples at once; a population, a neighbourhood or the
predictor's top K)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from lightning_nas.data import NASDataModule
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import write_atomic
from lightning_nas.spaces import Architecture, SearchSpace, create_space, space_options
from lightning_nas.spaces.latency import LatencySetting, LatencyTable
from lightning_nas.strategies.blackbox import search_method
from lightning_nas.strategies.candidates import CandidatePool, LRInterval, ProxyBudget
from lightning_nas.strategies.evaluators import Evaluations, TrainingEvaluator, best_so_far
from lightning_nas.strategies.ranks import Ranks


def sample_architectures(space: SearchSpace, count: int, seed: int) -> dict[str, Architecture]:
    """``count`` distinct architectures drawn uniformly from ``space``, a function of ``seed`` alone."""
    rng = random.Random(seed)
    drawn: dict[str, Architecture] = {}
    for _ in range(100 * count):
        if len(drawn) == count:
            break
        arch = space.sample(rng)
        drawn.setdefault(space.key(arch), arch)
    check(len(drawn) == count, f"the {space.name} space with these ops and nodes holds fewer than {count} distinct cells")
    return drawn


RECIPE_PROXIES = (None, "params")
"""The zero-cost proxies a training recipe computes itself (``proxy``); the benchmark looks others up in a table."""


class BlackBoxSearch:
    """A black-box search by ``method`` (a name of ``blackbox.METHODS``: random, evolution, reinforce, predictor,
    local, bayesian, zero_cost; or a search function of your own module by its import path,
    ``package.module:function``) over ``space`` (a registered name or ``package.module:Class``; ``nodes``/``ops`` its
    options) that trains at most ``num_samples`` architectures and keeps the best; ``max_params`` proposes only
    architectures whose proxy network has at most that many parameters, ``max_latency_ms`` only those whose proxy
    network runs one batch of ``latency_batch_size`` of the data's images on ``latency_device`` (one thread on a CPU)
    in at most that many milliseconds (``spaces.latency``: measured once per device, cached); ``options`` are the
    method's hyper-parameters; ``proxy`` a zero-cost proxy for the methods that rank by one (``zero_cost``,
    ``warm_start``). ``N``, ``F``, ``epochs``, ``lr``, ``lr_interval``, ``limit_train_batches`` and
    ``network_options`` (the space's network's options besides C and N) are the proxy budget (``ProxyBudget``).

    ``data`` must be an eval-mode data module with ``val_split`` > 0 (candidates are scored on held-out images, never
    on the test set). A restarted search with the same arguments skips every finished candidate.
    """

    def __init__(
        self,
        data: NASDataModule,
        output_dir: str = "runs/blackbox",
        method: str = "random",
        space: str = "darts",
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
        max_params: float | None = None,
        max_latency_ms: float | None = None,
        latency_device: str = "cpu",
        latency_batch_size: int = 1,
        options: dict[str, Any] | None = None,
        network_options: dict[str, Any] | None = None,
        proxy: str | None = None,
    ) -> None:
        self.method, self.search_method = method, search_method(method)
        self.label = self.search_method.label
        check(num_samples >= 1, f"num_samples={num_samples} must be at least 1: it is how many architectures to train")
        check(nodes is None or nodes >= 1, f"nodes={nodes} must be at least 1 (or left out for the space's default)")
        check(ops is None or len(ops) > 0, "ops is empty: name at least one candidate op, or leave it out")
        budget = ProxyBudget(N, F, epochs, lr, lr_interval, limit_train_batches,
                             network_options=dict(network_options or {}))
        check(data.mode == "eval" and data.val_split > 0,
              f"{self.label} scores candidates on held-out images: give the data module mode=eval and val_split > 0")
        self.space = create_space(space, **space_options(nodes, ops))
        network = budget.network(self.space)  # an option the space's network does not take: refused here
        latency = None if max_latency_ms is None else LatencyTable(
            self.space, (data.num_classes, data.in_chans, network),
            LatencySetting(latency_device, latency_batch_size, (data.input_size[1], data.input_size[2])))
        if max_params is not None or latency is not None:
            self.space = self.space.with_budget(max_params, max_latency_ms, data.num_classes, data.in_chans,
                                                latency=latency, **network)
        check(proxy in RECIPE_PROXIES, f"proxy={proxy!r}: the recipe's zero-cost proxies are "
                                       f"{', '.join(map(str, RECIPE_PROXIES))} (None: no proxy)")
        self.proxy, self.network = proxy, (data.num_classes, data.in_chans, network)
        self.options = dict(options or {})
        self.num_samples, self.seed = num_samples, seed
        self.output_dir, self.num_threads = Path(output_dir), num_threads
        # the results file is bound to these settings: "strategy" keeps its name, so searches written before
        # ``method`` was an argument resume
        self.pool = CandidatePool(data, self.output_dir / "results.jsonl", budget, accelerator, seed, label=self.label,
                                  space=self.space,
                                  settings={"strategy": method, "space": space, "nodes": nodes, "ops": ops,
                                            "max_params": max_params, "options": self.options,
                                            **({"max_latency_ms": max_latency_ms, "latency": latency.identity}
                                               if latency is not None else {}),
                                            **({"proxy": proxy} if proxy else {})})

    def search(self, evaluations: Evaluations) -> None:
        batch = self.search_method.batch_option  # e.g. all of random search's samples in one batch, for the ranks
        options = {batch: self.num_samples, **self.options} if batch else self.options
        self.search_method.search(self.space, evaluations, self.seed, **options)

    def proxy_scorer(self) -> Callable[[Sequence[Architecture]], list[float]]:
        """``params``: the proxy network's parameter count, a data-free proxy (bigger cells of a space score higher
        after training, on NAS-Bench-201 at Spearman 0.75)."""
        num_classes, in_chans, network = self.network
        return lambda archs: [float(self.space.num_params(arch, num_classes, in_chans, **network)) for arch in archs]

    def run(self) -> Architecture:
        """Run (or resume) the search; write the best architecture to ``genotype.json`` and return it."""
        import torch

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.pool.ranks = Ranks.launch(self.method)
        evaluations = Evaluations(TrainingEvaluator(self.pool, self.label), self.num_samples,
                                  proxy=self.proxy_scorer() if self.proxy else None)
        try:
            self.search(evaluations)
        except TypeError as error:  # an option the strategy does not take
            raise ConfigError(f"options of {self.method}: {error}") from None
        best, accuracy = evaluations.best()
        if self.pool.ranks.rank == 0:
            accuracies = [score for _, score in evaluations.history]
            summary = {"space": self.space.name, "strategy": self.method, "best_key": self.space.key(best),
                       "best_accuracy": accuracy, "accuracies": accuracies, "best_so_far": best_so_far(accuracies)}
            write_atomic(self.output_dir / "progress.json", json.dumps(summary, indent=1))
            path = write_atomic(self.output_dir / "genotype.json", self.space.to_json(best) + "\n")
            print(f"[{self.label}] best of {len(accuracies)} (held-out accuracy {accuracy:.4f}):\n"
                  f"{best}\nwritten to {path}", flush=True)
        return best

