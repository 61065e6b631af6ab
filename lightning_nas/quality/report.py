"""The found-vs-random report: does a search find architectures better than chance?

For S search seeds the strategy's recipe searches and its architecture is kept; R architectures are drawn uniformly
from the same space. Every architecture, found or random, is then retrained under one budget (same proxy network,
epochs, data and training seeds) and scored on the data module's validation images (the test set with val_split 0).
The report gives the found architectures' mean and spread, the random median and quartiles, each found
architecture's rank among the random ones, and the search's own signal over time (Yang et al., ICLR 2020, "NAS
evaluation is frustratingly hard": never one run per side).

For PNAS, a ``predictor_eval`` section adds the paper's Algorithm 2 (see ``predictor_eval``): how well the search's
predictor ranks random cells one block larger than those it learned from; a ``target_noise`` section (see
``target_noise``) how well two training runs of the same cells agree, which bounds what any predictor can reach. A
section with ``only: true`` runs alone (with the other sections that say so): no searches, and no retraining but of
the target-noise cells that ``target_noise.retrain`` asks for.

Everything lands in ``output_dir``: ``found/seed<S>.json`` per finished search, ``retrain.jsonl`` (a ``CandidatePool``
results file, which reports of one space and budget may share), ``report.json`` and ``report.png``, and
``predictor_eval/results.jsonl`` and ``target_noise/results.jsonl`` for their candidates. A killed report restarts
where it stopped.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lightning_nas.data import NASDataModule
from lightning_nas.errors import ConfigError, check
from lightning_nas.files import write_atomic
from lightning_nas.plots import found_vs_random_png
from lightning_nas.plugins import is_import_path
from lightning_nas.quality.predictor_eval import PredictorEval, PredictorEvaluation, format_predictor_table
from lightning_nas.quality.searches import STRATEGIES, run_search, search_signal
from lightning_nas.quality.target_noise import TargetNoise, TargetNoiseMeasurement, format_noise_table
from lightning_nas.strategies.candidates import CandidatePool, ProxyBudget, code_key
from lightning_nas.spaces import SPACES, Architecture, create_space, space_options, spaces_offering
from lightning_nas.strategies.blackbox_search import sample_architectures


@dataclass
class Space:
    """Where the random architectures come from: it must be the space the strategy searches (a registered name;
    ``nodes``, ``ops``: its options, the space's defaults when left out)."""

    name: str = "darts"
    nodes: int | None = None
    ops: Sequence[str] | None = None


@dataclass(frozen=True)
class RetrainBudget(ProxyBudget):
    """The one final-training budget every architecture gets: a proxy budget (a proxy network of 3N cells of F
    channels; ``limit_val_batches`` scores on the first part of the test set only, the same images for every
    architecture) trained with ``seeds`` seeds."""

    N: int = 1
    F: int = 16
    epochs: int = 10
    lr: float = 0.05
    seeds: int = 1
    """Training seeds per architecture (0..seeds-1, the same for every architecture); accuracies are averaged."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.seeds >= 1, f"retrain.seeds={self.seeds} must be at least 1")


def rank_among(value: float, others: Sequence[float]) -> float:
    """1 + how many of ``others`` beat ``value`` (ties count half): 1 is better than all of them."""
    return 1 + sum(1.0 if other > value else 0.5 if other == value else 0.0 for other in others)


def summarize(found: Sequence[float], random: Sequence[float]) -> dict[str, Any]:
    """The report's numbers: found mean and spread, random median and quartiles, ranks of the found ones."""
    q1, median, q3 = statistics.quantiles(random, n=4, method="inclusive") if len(random) > 1 else [random[0]] * 3
    ranks = [rank_among(value, random) for value in found]
    return {
        "found_mean": statistics.fmean(found),
        "found_std": statistics.stdev(found) if len(found) > 1 else 0.0,
        "found_min": min(found), "found_max": max(found),
        "random_median": median, "random_q1": q1, "random_q3": q3,
        "random_min": min(random), "random_max": max(random),
        "found_ranks": ranks, "mean_rank": statistics.fmean(ranks), "random_count": len(random),
        "found_above_random_median": sum(value > median for value in found),
    }


def search_recipe(search_config: str) -> str:
    """The search recipe's config file: a path as given, else a shipped recipe of that name (``darts_digits``), so
    the shipped quality configs run from any folder."""
    if Path(search_config).is_file():
        return search_config
    from lightning_nas.recipes import config_names, config_path

    if Path(search_config).stem in config_names() and not Path(search_config).parent.name:
        return str(config_path(search_config))
    raise ConfigError(f"search_config {search_config!r} is neither a file nor a shipped recipe: give the search "
                      f"recipe's YAML file or one of {', '.join(n for n in config_names() if '/' not in n)}")


def check_retrain_records(pool: CandidatePool) -> None:
    """Every record a retrain file already holds has a finite accuracy in [0, 1] and seconds >= 0 (a hand-edited
    line otherwise stops the report after hours of retraining, before report.json is written)."""
    for record in pool.finished().values():
        for field, top in (("accuracy", 1.0), ("seconds", math.inf)):
            value = record.get(field)
            check(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= top
                  and math.isfinite(value),
                  f"{pool.results.path}: the record of {record.get('key')} has {field}={value!r} (a number in [0, "
                  f"{top:g}] is needed); repair that line, or delete it to retrain that architecture")


class QualityReport:
    """Search S times, draw R random architectures, retrain all under one budget, compare (see the module doc)."""

    def __init__(
        self,
        strategy: str,
        search_config: str,
        data: NASDataModule,
        space: Space | None = None,
        retrain: RetrainBudget | None = None,
        seeds: int = 3,
        random: int = 8,
        first_seed: int = 1,
        random_seed: int = 12345,
        search_args: Sequence[str] = (),
        output_dir: str = "runs/quality",
        retrain_file: str | None = None,
        predictor_eval: PredictorEval | None = None,
        target_noise: TargetNoise | None = None,
        parallel: int = 1,
    ) -> None:
        """``first_seed``: search seeds are first_seed..first_seed+seeds-1; keep them apart from the seed a config was
        tuned on (0 in the shipped recipes). ``random_seed`` draws the random architectures, the same for every
        strategy of one space. ``search_args`` are extra overrides for every search. ``retrain_file`` (default
        ``<output_dir>/retrain.jsonl``) may be shared by reports with the same data, space, random seed and budget,
        e.g. DARTS's and random search's: their random architectures are then trained once. ``predictor_eval``
        (PNAS only) also evaluates the search's predictor with Algorithm 2, on the search recipe's data and budget;
        ``target_noise`` (PNAS only) measures how well repeated training runs under that budget agree (and, with its
        ``retrain``, how well that budget ranks as this report's retraining does). ``parallel`` searches run at once,
        each in its own process: a machine with more cores than one search uses finishes the seeds sooner (keep
        parallel x the recipe's threads within the cores)."""
        space = space or Space()
        check(strategy in STRATEGIES, f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        check(seeds >= 1, f"seeds={seeds}: the report needs at least 1 search seed (3 or more to see a spread)")
        check(parallel >= 1, f"parallel={parallel}: at least 1 search runs at a time")
        check(random >= 1, f"random={random}: the report needs at least 1 random architecture (8 or more)")
        check(space.name in SPACES or is_import_path(space.name),
              f"space.name={space.name!r} is not a space; use one of {', '.join(sorted(SPACES))} or "
              "package.module:Class")
        expected = STRATEGIES[strategy].space or space.name
        check(space.name == expected, f"the {strategy} strategy searches the {expected} space, but the config's space "
                                      f"is {space.name!r}: set space.name to {expected!r}")
        differentiable = spaces_offering("mixture_supernet")
        check(STRATEGIES[strategy].space is not None or not STRATEGIES[strategy].lightning or space.name in differentiable,
              f"the {strategy} strategy searches a differentiable supernet and the {space.name} space has none: set "
              f"space.name to {' or '.join(differentiable)} (the space its search config's model.space names)")
        search_config = search_recipe(search_config)
        check(data.mode == "eval", "retraining needs the data module in mode=eval (val_split 0 scores on the test set)")
        self.strategy, self.search_config, self.data = strategy, search_config, data
        self.space, self.budget = space, retrain or RetrainBudget()
        self.search_space = create_space(space.name, **space_options(space.nodes, space.ops))
        self.code_key = code_key()
        self.seeds = list(range(first_seed, first_seed + seeds))
        self.random, self.random_seed, self.search_args = random, random_seed, list(search_args)
        self.parallel = parallel
        self.output_dir = Path(output_dir)
        self.pool = CandidatePool(data, retrain_file or self.output_dir / "retrain.jsonl", self.budget,
                                  accelerator="cpu", label="retrain", space=self.search_space)
        check_retrain_records(self.pool)
        self.sections: dict[str, tuple[Any, bool, Callable[[dict[str, Any]], str]]] = {}
        """The PNAS sections asked for: name -> (measurement, runs alone, its table)."""
        recipe = (search_config, self.search_args)
        sections: list[tuple[str, Any, Callable[[Any], Any], Callable[[dict[str, Any]], str]]] = [
            ("predictor_eval", predictor_eval, lambda options: PredictorEvaluation.from_recipe(
                *recipe, self.output_dir / "predictor_eval", options, random_seed), format_predictor_table),
            ("target_noise", target_noise, lambda options: TargetNoiseMeasurement.from_recipe(
                *recipe, self.output_dir / "target_noise", options, random_seed, self.retrained), format_noise_table)]
        for name, options, measurement, table in sections:
            if options is not None:
                check(strategy == "pnas", f"{name} measures the PNAS search, but the strategy is {strategy!r}: remove "
                                          f"the {name} section or use strategy pnas")
                self.sections[name] = (measurement(options), options.only, table)

    def found(self, seed: int) -> tuple[Architecture, float, bool]:
        """The architecture the search with ``seed`` found (searching first unless a finished search left it), the
        search's wall time in seconds, and whether it resumed an interrupted search (its time is then the rest's)."""
        record = self.output_dir / "found" / f"seed{seed}.json"
        if not record.is_file():
            resumed = self.search_folder(seed).is_dir()
            start = time.perf_counter()
            arch = run_search(self.strategy, self.search_config, seed, self.search_folder(seed), self.search_args,
                              self.search_space)
            write_atomic(record, json.dumps({"genotype": json.loads(self.search_space.to_json(arch)),
                                             "seconds": time.perf_counter() - start, "resumed": resumed}))
        data = json.loads(record.read_text())
        return self.search_space.from_json(json.dumps(data["genotype"])), data["seconds"], data.get("resumed", False)

    def search_folder(self, seed: int) -> Path:
        return self.output_dir / "searches" / f"seed{seed}"

    def retrained(self, architectures: dict[str, Architecture]) -> dict[str, float]:
        """Each architecture's accuracy after the retraining budget, averaged over the training seeds, all trained
        under this process's ``code_key``: results of other code in a shared retrain file are not reused."""
        jobs = {f"{key}/seed{seed}/{self.code_key}": (key, seed)
                for key in architectures for seed in range(self.budget.seeds)}
        results = self.pool.train_all(
            "retrain", list(jobs),
            lambda job: self.pool.train(job, architectures[jobs[job][0]], seed=jobs[job][1])[1],
        )
        accuracies: dict[str, list[float]] = {}
        for job, (key, _) in jobs.items():
            accuracies.setdefault(key, []).append(results[job]["accuracy"])
        return {key: statistics.fmean(values) for key, values in accuracies.items()}

    def run(self) -> dict[str, Any]:
        """Run (or resume) the report: found vs random, then the PNAS sections asked for; or only the sections with
        ``only: true``."""
        path = self.output_dir / "report.json"
        alone = [name for name, (_, only, _) in self.sections.items() if only]
        report: dict[str, Any]
        if alone:
            report = json.loads(path.read_text()) if path.is_file() else {
                "strategy": self.strategy, "search_config": self.search_config}
        else:
            report = self.found_vs_random()
        for name in alone or self.sections:
            measurement, _, table = self.sections[name]
            report[name] = measurement.run()
            write_atomic(path, json.dumps(report, indent=1))
            print(table(report[name]))
        return report

    def found_vs_random(self) -> dict[str, Any]:
        """Search, retrain the found and random architectures, write report.json and report.png, print the table."""
        random = sample_architectures(self.search_space, self.random, self.random_seed)
        with ThreadPoolExecutor(self.parallel) as searches:  # each waits on its own search process
            found = dict(zip(self.seeds, searches.map(self.found, self.seeds)))
        found_keys = {seed: self.search_space.key(arch) for seed, (arch, _, _) in found.items()}
        # the found cells first: a report stopped during its retraining has what only its searches could give
        accuracy = self.retrained({**{found_keys[s]: g for s, (g, _, _) in found.items()}, **random})
        found_accuracies = [accuracy[found_keys[seed]] for seed in self.seeds]
        random_accuracies = [accuracy[key] for key in random]
        report = {
            "strategy": self.strategy, "search_config": self.search_config, "data": type(self.data).__name__,
            "space": asdict(self.space), "retrain": asdict(self.budget), "random_seed": self.random_seed,
            **summarize(found_accuracies, random_accuracies),
            "found": [{"seed": seed, "key": found_keys[seed], "accuracy": accuracy[found_keys[seed]],
                       "search_seconds": found[seed][1], "search_resumed": found[seed][2],
                       "genotype": json.loads(self.search_space.to_json(found[seed][0])),
                       "signal": search_signal(self.strategy, self.search_folder(seed))} for seed in self.seeds],
            "random": [{"key": key, "accuracy": accuracy[key]} for key in random],
            "retrain_seconds": sum(r["seconds"] for r in self.pool.finished().values()), "code_key": self.code_key,
        }
        write_atomic(self.output_dir / "report.json", json.dumps(report, indent=1))
        title = f"{self.strategy} on {report['data']}"
        write_atomic(self.output_dir / "report.png", found_vs_random_png(found_accuracies, random_accuracies, title))
        print(format_table(report))
        return report


def format_table(report: dict[str, Any]) -> str:
    r = report
    lines = [
        f"{r['strategy']} on {r['data']} ({r['space']['name']} space), retrain N={r['retrain']['N']} "
        f"F={r['retrain']['F']} epochs={r['retrain']['epochs']}, {len(r['found'])} search seeds vs "
        f"{r['random_count']} random architectures",
        f"{'':<22}{'accuracy':>10}{'rank':>8}{'search s':>10}",
    ]
    for found in r["found"]:
        rank = rank_among(found["accuracy"], [x["accuracy"] for x in r["random"]])
        lines.append(f"{'found, seed ' + str(found['seed']):<22}{found['accuracy']:>10.4f}"
                     f"{rank:>5.1f}/{r['random_count'] + 1:<2}{found['search_seconds']:>10.0f}"
                     f"{' (resumed: the time after the restart)' if found.get('search_resumed') else ''}")
    lines += [
        f"found mean ± std      {r['found_mean']:.4f} ± {r['found_std']:.4f} (min {r['found_min']:.4f}, "
        f"max {r['found_max']:.4f})",
        f"random median [q1,q3] {r['random_median']:.4f} [{r['random_q1']:.4f}, {r['random_q3']:.4f}] "
        f"(min {r['random_min']:.4f}, max {r['random_max']:.4f})",
        f"found above the random median: {r['found_above_random_median']}/{len(r['found'])}; mean rank "
        f"{r['mean_rank']:.1f} of {r['random_count'] + 1} (1 = better than every random architecture)",
        "search signal (first -> last, per seed):",
    ]
    for found in r["found"]:
        signal = ", ".join(f"{key} {values[0]:.3f} -> {values[-1]:.3f}" for key, values in sorted(found["signal"].items()))
        lines.append(f"  seed {found['seed']}: {signal or 'none logged'}")
    return "\n".join(lines)


__all__ = ["ConfigError", "QualityReport", "RetrainBudget", "Space", "format_table", "rank_among", "summarize"]
