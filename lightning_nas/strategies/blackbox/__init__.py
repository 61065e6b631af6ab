"""Black-box search strategies over any registered space: each is a short loop that asks the space for architectures
(sample, mutate, neighbours, encode) and an ``Evaluations`` for their scores, so each runs unchanged on a benchmark
table (seconds) or on proxy training (the recipes). ``METHODS`` is the one table of them, by name: the benchmark
(``--strategies``), the black-box recipes (``--method``, ``python -m lightning_nas.recipes.<name>``) and the
found-vs-random report read it; a method of the user's own module goes by its import path instead
(``search_method("mypkg.search:my_search")``). Each takes ``(space, evaluations, seed, **hyper-parameters)`` and stops
when the evaluations' budget is spent."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from lightning_nas.errors import ConfigError
from lightning_nas.plugins import FORM, is_import_path, load
from lightning_nas.strategies.blackbox.bayesian import bayesian_optimisation
from lightning_nas.strategies.blackbox.evolution import regularized_evolution
from lightning_nas.strategies.blackbox.local import local_search
from lightning_nas.strategies.blackbox.predictor import predictor_guided
from lightning_nas.strategies.blackbox.random import random_search
from lightning_nas.strategies.blackbox.reinforce import reinforce
from lightning_nas.strategies.blackbox.zero_cost import zero_cost


@dataclass(frozen=True)
class SearchMethod:
    """A black-box search method: ``search(space, evaluations, seed, **options)``, the name the papers give it
    (``label``, in progress lines and messages), and ``batch_option``, the option of ``search`` that the training
    recipe sets to its whole budget, so that every proposal is one batch the ranks of a ``torchrun`` share (random
    search's ``batch``); None for a method that proposes as it learns. ``needs_proxy``: the method ranks by a
    zero-cost proxy (``Evaluations.proxy``) and is refused without one."""

    search: Callable[..., Any]
    label: str
    batch_option: str | None = None
    needs_proxy: bool = False


METHODS: dict[str, SearchMethod] = {
    "random": SearchMethod(random_search, "random search", batch_option="batch"),
    "evolution": SearchMethod(regularized_evolution, "regularized evolution"),
    "reinforce": SearchMethod(reinforce, "reinforce"),
    "predictor": SearchMethod(predictor_guided, "predictor-guided search"),
    "local": SearchMethod(local_search, "local search"),
    "bayesian": SearchMethod(bayesian_optimisation, "Bayesian optimisation"),
    "zero_cost": SearchMethod(zero_cost, "training-free search", needs_proxy=True),
}
"""Every black-box search method by name (the benchmark's ``--strategies``, the recipes' ``--method`` and their
``python -m lightning_nas.recipes.<name>`` commands, the report's ``--strategy``)."""


def search_method(name: str) -> SearchMethod:
    """The method ``name`` names: one of ``METHODS``, or a search function of the user's own module by its import
    path (``package.module:function``, taking ``(space, evaluations, seed, **options)`` as the table's do); anything
    else is a one-line ConfigError."""
    if not is_import_path(name):
        if name not in METHODS:
            raise ConfigError(f"unknown search method {name!r}; known: {', '.join(METHODS)}, or a search function "
                              f"of your own by its import path, {FORM}")
        return METHODS[name]
    search = load(name, "search method")
    if not callable(search):
        raise ConfigError(f"search method {name!r} is a {type(search).__name__}, not a function taking (space, "
                          "evaluations, seed, **options)")
    try:
        inspect.signature(search).bind(None, None, 0)
    except TypeError:
        raise ConfigError(f"search method {name!r} takes {inspect.signature(search)}, not (space, evaluations, "
                          "seed, **options)") from None
    return SearchMethod(search, name)


__all__ = ["METHODS", "SearchMethod", "bayesian_optimisation", "local_search", "predictor_guided", "random_search",
           "regularized_evolution", "reinforce", "search_method", "zero_cost"]
