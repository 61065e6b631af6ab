"""Search spaces as plug-ins: the interface every strategy searches through, and the one registry of spaces.

A strategy never knows which space it searches (NASLib's and NNI's split): it asks the space to sample, mutate,
list neighbours and encode an architecture, and an evaluator to score it. Every space here writes an architecture as
a fixed list of categorical decisions (``choices()`` gives the number of options of each, ``decisions``/``decode``
convert), which gives uniform sampling, one-edit mutations and neighbours, the predictors' one-hot encoding and a
factorised policy for every space at once; a space overrides what it does its own way (its published sampler, its
text form). Spaces register by name with ``register_space`` and are built with ``create_space(name, **options)``.

A space offers the strategies that need more than its architectures up to three hooks, each a method of its own that
it overrides or leaves out: the one-shot networks ``mixture_supernet`` (``Supernet``: DARTS, GDAS, β-DARTS) and
``shared_child`` (``SharedChild``: ENAS, RSPS), and ``progressive`` growth (``Growth``: PNAS); ``offers(hook)`` says
which, and a space asked for one it lacks refuses in one line naming the spaces that have it.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import random
from typing import Any, Callable, ClassVar, Protocol, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.errors import ConfigError, check

Architecture = Any
"""An architecture of some space: a Genotype, an NB201Architecture, a MacroArchitecture (plain frozen data)."""

SAMPLE_TRIES = 10_000
"""Draws before sampling under a budget gives up."""
MUTATION_TRIES = 100
"""Edits tried before a mutation gives up: a few spaces map several decision lists to one architecture (PNAS)."""


class Supernet(Protocol):
    """A mixture supernet (DARTS's continuous relaxation): a mixed op on every edge, weighting its candidate ops by
    softmax(α), which DARTS, GDAS and β-DARTS search (``SearchNetwork``, ``NB201SearchNetwork``): α apart from the
    weights, the forward pass with either held constant, and derivation."""

    primitives: tuple[str, ...]
    tau: float | None

    def __call__(self, x: torch.Tensor, alpha_grad: bool = True, weight_grad: bool = True) -> torch.Tensor: ...

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def weight_parameters(self) -> list[nn.Parameter]: ...

    def alphas(self) -> dict[str, nn.Parameter]: ...

    def genotype(self, max_skip_connect: int | None = None) -> Architecture: ...


class SharedChild(Protocol):
    """ENAS's child with shared weights, which ENAS and random search with parameter sharing train: every option of
    every decision holds its own weights, and ``forward(x, path=decisions)`` computes only the options ``decisions``
    (the space's ``decisions(arch)``) pick, so every architecture making the same choice trains the same weights
    (``MicroChild``, ``MacroNetwork(None)``, ``NB201SearchNetwork``); ``weight_parameters`` are what trains."""

    def __call__(self, x: torch.Tensor, *, path: Sequence[int]) -> torch.Tensor: ...

    def weight_parameters(self) -> list[nn.Parameter]: ...


class Growth(Protocol):
    """Progressive growth (PNAS, Liu et al. 2018): the space's architectures grown one step at a time (PNAS's cells of
    1..B blocks, one block a step), which PNAS searches level by level: it trains every architecture of ``first()``,
    then expands its beam with ``children`` and ranks the children with a predictor reading ``tokens``.

    The grown architectures (PNAS: ``PNASCell``) are hashable, equal exactly when they are the same architecture, and
    live in the results file as ``to_data`` (JSON data) under ``key``; ``architecture`` gives the space's own
    architecture of one (of any level: ``build`` and ``to_json`` take it), which candidates train and the search
    writes. ``tokens`` is what the predictor reads: ``len(step)`` tokens a step, the token at position p of a step an
    index into the embedding table ``step[p]``, of size ``vocabularies[step[p]]``. ``settings`` (JSON data) is what
    a candidate's accuracy and the tokens' meaning depend on besides the architecture: the results file and the saved
    predictors are bound to it, so a search under other settings is refused or refits its predictor."""

    levels: int
    """Steps of the largest architectures (PNAS's B): the search's levels."""
    vocabularies: dict[str, int]
    """The predictor's embedding tables by name (each a valid Python name), with how many tokens each holds."""
    step: tuple[str, ...]
    """The table each token of one step reads from."""
    settings: dict[str, Any]

    def first(self) -> list[Any]:
        """Every distinct architecture of one step, in a fixed order (level 1)."""

    def children(self, grown: Any) -> list[Any]:
        """Every distinct architecture one step larger than ``grown``, in a fixed order."""

    def key(self, grown: Any) -> str: ...

    def to_data(self, grown: Any) -> Any: ...

    def from_data(self, data: Any) -> Any: ...

    def architecture(self, grown: Any) -> Architecture: ...

    def tokens(self, grown: Any) -> list[int]: ...

    def inheritance(self, parent: Any, child: Any, N: int) -> dict[str, str | None]:
        """Weight inheritance: module prefixes of ``child``'s network (``build(architecture(child), ..., N)``) mapped
        to the prefix of ``parent``'s network computing the same thing, or None where the child's new step starts
        fresh (``WeightInheritance``'s mapping)."""


HOOKS = {
    "mixture_supernet": "mixture supernet, which DARTS, GDAS and β-DARTS search",
    "shared_child": "shared child, which ENAS and RSPS train along one architecture at a time",
    "progressive": "progressive growth, which PNAS searches level by level",
}
"""What a space may offer besides its architectures, each a method of ``SearchSpace``, with what it is."""


class SearchSpace:
    """A space of architectures: decisions, sampling, edits, encodings, text forms and the networks they build."""

    name: ClassVar[str]
    options: dict[str, Any] = {}
    """The options the space was created with (``create_space`` sets them), to create it again elsewhere."""
    _network: tuple[int, int, dict[str, Any]]
    _params: dict[str, int]

    def choices(self) -> tuple[int, ...]:
        """How many options each decision has."""
        raise NotImplementedError

    def decisions(self, arch: Architecture) -> tuple[int, ...]:
        """``arch`` as one option index per decision (``decode``'s inverse)."""
        raise NotImplementedError

    def decode(self, decisions: Sequence[int]) -> Architecture:
        """The architecture one option per decision picks."""
        raise NotImplementedError

    max_params: float | None = None
    """With ``with_budget``: only architectures whose network has at most this many parameters are proposed."""
    max_latency_ms: float | None = None
    """With ``with_budget``: only architectures whose network runs in at most this many milliseconds are proposed."""
    latency: Callable[[Architecture], float] | None = None
    """With a latency budget: an architecture's measured milliseconds (a ``latency.LatencyTable``)."""

    def draw(self, rng: random.Random) -> Architecture:
        """An architecture drawn uniformly over the decisions (a space may draw its own published way)."""
        return self.decode([rng.randrange(n) for n in self.choices()])

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly drawn architecture within the budget, if any."""
        for _ in range(SAMPLE_TRIES):
            arch = self.draw(rng)
            if self.fits(arch):
                return arch
        raise ConfigError(f"no {self.name} architecture of {SAMPLE_TRIES} drawn has {self.budget_text()}; raise "
                          f"{' or '.join(self.budget())}")

    def with_budget(self, max_params: float | None = None, max_latency_ms: float | None = None, num_classes: int = 10,
                    in_chans: int = 3, latency: Callable[[Architecture], float] | None = None,
                    **network: Any) -> SearchSpace:
        """This space restricted to architectures whose network ``build(arch, num_classes, in_chans, **network)`` has
        at most ``max_params`` parameters and runs in at most ``max_latency_ms`` milliseconds as ``latency`` measures
        it (by default a ``LatencyTable``: batch 1 of 32x32 images on one CPU thread, cached); ``None`` lifts either."""
        check(max_params is None or 0 < max_params < math.inf,
              f"max_params={max_params}: give a positive number of parameters (or leave it out for no budget)")
        check(max_latency_ms is None or 0 < max_latency_ms < math.inf,
              f"max_latency_ms={max_latency_ms}: give a positive number of milliseconds (or leave it out for no "
              f"budget)")
        budgeted = copy.copy(self)
        budgeted.max_params, budgeted.max_latency_ms = max_params, max_latency_ms
        budgeted._network, budgeted._params = (num_classes, in_chans, self.network_options(**network)), {}
        if max_latency_ms is not None and latency is None:
            from lightning_nas.spaces.latency import LatencyTable

            latency = LatencyTable(self, budgeted._network)
        budgeted.latency = latency
        return budgeted

    def budget(self) -> dict[str, str]:
        """The budget's limits by option name (``max_params``, ``max_latency_ms``), each in words; empty without one."""
        limits = {"max_params": (self.max_params, "parameters"), "max_latency_ms": (self.max_latency_ms, "ms latency")}
        return {name: f"at most {value:g} {unit}" for name, (value, unit) in limits.items() if value is not None}

    def budget_text(self) -> str:
        return " and ".join(self.budget().values())

    def fits(self, arch: Architecture) -> bool:
        """Whether ``arch`` is within the budget (always, without one): parameters counted first, latency timed
        only for what they let through."""
        if self.max_params is not None:
            key = self.key(arch)
            if key not in self._params:
                num_classes, in_chans, network = self._network
                self._params[key] = self.num_params(arch, num_classes, in_chans, **network)
            if self._params[key] > self.max_params:
                return False
        return self.max_latency_ms is None or self.latency is not None and self.latency(arch) <= self.max_latency_ms

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        """A random one-edit neighbour: one decision changed to another option, giving a different architecture."""
        current, key, choices = list(self.decisions(arch)), self.key(arch), self.choices()
        editable = [d for d, n in enumerate(choices) if n > 1]
        for _ in range(MUTATION_TRIES if editable else 0):
            d = rng.choice(editable)
            option = rng.randrange(choices[d] - 1)
            child = self.decode(current[:d] + [option + (option >= current[d])] + current[d + 1:])
            if self.key(child) != key and self.fits(child):
                return child
        raise ConfigError(f"the {self.name} space has no architecture one edit away from {self.to_string(arch)}")

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every distinct architecture one edit (one decision changed) away within the budget, in a fixed order."""
        current, key = list(self.decisions(arch)), self.key(arch)
        found: dict[str, Architecture] = {}
        for d, n in enumerate(self.choices()):
            for option in range(n):
                if option != current[d]:
                    child = self.decode(current[:d] + [option] + current[d + 1:])
                    found.setdefault(self.key(child), child)
        found.pop(key, None)
        return [child for child in found.values() if self.fits(child)]

    def encode(self, arch: Architecture) -> list[float]:
        """A fixed-length vector for predictors: the one-hot code of every decision, concatenated."""
        vector: list[float] = []
        for option, n in zip(self.decisions(arch), self.choices()):
            vector.extend(1.0 if k == option else 0.0 for k in range(n))
        return vector

    def key(self, arch: Architecture) -> str:
        """A stable short id: results files, training seeds and caches use it."""
        return hashlib.sha1(self.to_json(arch).encode()).hexdigest()[:16]

    def to_json(self, arch: Architecture) -> str:
        raise NotImplementedError

    def from_json(self, text: str) -> Architecture:
        raise NotImplementedError

    def to_string(self, arch: Architecture) -> str:
        """The space's own published text form (JSON where it has none)."""
        return self.to_json(arch)

    def from_string(self, text: str) -> Architecture:
        return self.from_json(text)

    def build(self, *args: Any, **kwargs: Any) -> nn.Module:
        """``build(arch, num_classes, in_chans, **network)``: the network a candidate trains. A space declares its
        network's options as keyword arguments of its ``build`` after ``in_chans``, each with a default
        (``network_options``): ``C`` channels and ``N`` cells per stage for the cell spaces, whatever a chain space's
        network needs for its own. (Typed loosely so that each space's signature overrides it.)"""
        raise NotImplementedError

    def _build_options(self) -> dict[str, Any]:
        """``build``'s keyword arguments after ``in_chans`` with their defaults (``inspect.Parameter.empty``: none)."""
        parameters = list(inspect.signature(self.build).parameters.values())[3:]
        return {p.name: p.default for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def network_options(self, **given: Any) -> dict[str, Any]:
        """The options of ``build``'s network with their defaults, ``given`` over them; one the network does not take,
        or one without a default that is not given, is refused in one line."""
        defaults = self._build_options()
        unknown = sorted(set(given) - set(defaults))
        check(not unknown, f"the {self.name} network does not take {', '.join(unknown)}; its options: "
                           f"{', '.join(defaults) or 'none'}")
        options = {**defaults, **given}
        missing = [name for name, value in options.items() if value is inspect.Parameter.empty]
        check(not missing, f"the {self.name} network needs {', '.join(missing)}: give a default to each of its "
                           f"build's options")
        return options

    def sized(self, C: int, N: int, /, **options: Any) -> dict[str, Any]:
        """``build``'s options for a network of ``C`` channels and ``N`` cells per stage, the size its callers state
        (a proxy's F and N, final training's C and layers // 3), each where the network takes it, with ``options``
        (the network's others) over them."""
        takes = self._build_options()
        size = {name: value for name, value in (("C", C), ("N", N)) if name in takes}
        return self.network_options(**{**size, **options})

    def mixture_supernet(self, num_classes: int, in_chans: int, **options: Any) -> Supernet:
        """The mixture supernet holding every architecture of the space (``Supernet``), for DARTS, GDAS and β-DARTS;
        ``options`` are the network's (``C``, ``layers``, ...). A space without one leaves this out."""
        raise self.lacks("mixture_supernet")

    def shared_child(self, num_classes: int, in_chans: int, **options: Any) -> SharedChild:
        """The child with shared weights, run along one architecture's decisions (``SharedChild``), for ENAS and
        RSPS; ``options`` are the network's (``C``, ``layers``, ...). A space without one leaves this out."""
        raise self.lacks("shared_child")

    def progressive(self) -> Growth:
        """The space's architectures grown one step at a time (``Growth``), for PNAS. A space without it leaves this
        out."""
        raise self.lacks("progressive")

    @classmethod
    def offers(cls, hook: str) -> bool:
        """Whether the space offers ``hook`` of ``HOOKS`` ("mixture_supernet", "shared_child", "progressive"): whether
        it overrides that method."""
        return getattr(cls, hook) is not getattr(SearchSpace, hook)

    def lacks(self, hook: str) -> ConfigError:
        """The one-line refusal of a hook this space does not offer, naming the spaces that do."""
        return ConfigError(f"the {self.name} space has no {HOOKS[hook]}; spaces that have one: "
                           f"{', '.join(spaces_offering(hook))}")

    def num_params(self, arch: Architecture, num_classes: int, in_chans: int, **network: Any) -> int:
        """Parameters of ``build(arch, ...)``, counted on the meta device (no memory, no initialisation cost)."""
        network = self.network_options(**network)
        with torch.device("meta"):
            return sum(p.numel() for p in self.build(arch, num_classes, in_chans, **network).parameters())

    def num_flops(self, arch: Architecture, num_classes: int, in_chans: int, input_size: tuple[int, int] = (32, 32),
                  **network: Any) -> int:
        """Floating-point operations of one image's forward pass through ``build(arch, ...)``, as torch's
        ``FlopCounterMode`` counts them (2 per multiply-add of convolutions and matrix products; normalisation,
        activations and pooling are not counted), run on the meta device (no memory, no arithmetic)."""
        options = self.network_options(**network)
        with torch.device("meta"):
            model = self.build(arch, num_classes, in_chans, **options)
            with FlopCounterMode(display=False) as counter:
                model(torch.zeros(1, in_chans, *input_size))
        return counter.get_total_flops()


SPACES: dict[str, type[SearchSpace]] = {}
"""Every registered search space by name."""


def register_space(space: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``space`` available to ``create_space`` under ``space.name``."""
    SPACES[space.name] = space
    return space


def spaces_offering(hook: str) -> list[str]:
    """The registered spaces that offer ``hook`` of ``HOOKS``, by name."""
    return sorted(name for name, space in SPACES.items() if space.offers(hook))


def space_options(nodes: int | None = None, ops: Sequence[str] | None = None) -> dict[str, Any]:
    """The options a config sets (``nodes``: a cell space's nodes, PNAS's blocks B; ``ops``: its candidate ops), for
    ``create_space``: the space's own defaults for what is left out."""
    return {key: value for key, value in (("nodes", nodes), ("ops", tuple(ops) if ops else None)) if value is not None}
