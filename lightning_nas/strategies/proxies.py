"""Zero-cost proxies: an architecture scored from its network at initialisation, without training it.

Each proxy follows its authors' code (read, not copied): synflow, snip, grad_norm and jacob_cov as Abdelfattah et
al. (ICLR 2021, SamsungLabs/zero-cost-nas ``foresight/pruners``) compute them, naswot as Mellor et al. (ICML 2021,
BayesWatch/nas-without-training ``score_networks.py``, the ``hook_logdet`` score), and the parameter and FLOP counts
of the space (``SearchSpace.num_params``, ``num_flops``). A higher score is meant to mean a better network;
``benchmark proxies`` measures how far it does (Spearman's ρ with a benchmark table).

- ``synflow`` (Tanaka et al., NeurIPS 2020), data-free: on a copy of the network in float64 with every weight and
  buffer made absolute and BatchNorm removed (the authors' ``bn=False``), the input one image of ones, ``R = Σ
  output``; the score is Σ over the weights of Conv2d and Linear layers of ``|w · ∂R/∂w|``.
- ``snip`` (Lee et al., ICLR 2019): Σ ``|w · ∂L/∂w|`` over the same weights, L the cross-entropy of one batch with
  its labels (the authors' ``|∂L/∂mask|`` at mask 1 is this product).
- ``grad_norm``: Σ over those layers of each layer's ``‖∂L/∂w‖₂`` (a sum of per-layer norms, as the authors sum their
  per-layer array; not the norm of all gradients).
- ``jacob_cov`` (NASWOT v1, Mellor et al. 2020, as Abdelfattah et al. compute it): J = ∂(Σ outputs)/∂x per image,
  the batch's correlation matrix of J's rows with eigenvalues λ, score ``-Σ log(λ+k) + 1/(λ+k)``, k = 1e-5; NaN where
  the correlation is undefined (an image's J constant, e.g. a cell whose output ignores its input).
- ``naswot`` (NASWOT v2): the binary code (input > 0) of every module whose class name holds "ReLU" (the authors'
  rule: it also matches ``ReLUConvBN``, whose input is its inner ReLU's, so those codes count twice there as here),
  ``K = C Cᵀ + (1-C)(1-C)ᵀ`` over the batch (N_A minus the Hamming distance), score ``log |det K|``.

The data-dependent four share one forward pass of the batch (BatchNorm in training mode, batch statistics, as both
authors' freshly built networks run): naswot reads the ReLU codes during it (Mellor's second forward of the same
batch gives the same codes: batch statistics do not depend on the first), snip and grad_norm read one backward of
the loss to the weights, jacob_cov one backward of Σ outputs to the input alone: 1.2 CPU-s for all four per
NAS-Bench-201 cell (C=16, N=5, a batch of 64 at 32x32, one thread; synflow, params and flops 0.06, 0.002 and 0.24).
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import ConfigError, check
from lightning_nas.spaces import Architecture, SearchSpace
from lightning_nas.strategies.evaluators import Evaluator

Batch = tuple[torch.Tensor, torch.Tensor]
"""Images (B, in_chans, H, W) and their integer labels (B,)."""

JACOB_COV_K = 1e-5
"""Abdelfattah et al.'s offset of the eigenvalues in jacob_cov (keeps log and 1/λ finite)."""


@dataclass(frozen=True)
class NetworkShape:
    """The network a proxy scores: ``space.build(arch, num_classes, in_chans, **network)`` fed ``input_size`` images,
    ``C`` and ``N`` among its options where the space's network takes them (``options``)."""

    num_classes: int = 10
    in_chans: int = 3
    C: int = 16
    N: int = 5
    input_size: tuple[int, int] = (32, 32)

    def options(self, space: SearchSpace) -> dict[str, Any]:
        """The space's network options: its defaults, with ``C`` and ``N`` where it takes them."""
        options = space.network_options()
        return {**options, **{name: getattr(self, name) for name in ("C", "N") if name in options}}


def weighted_layers(network: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    """The layers the gradient proxies sum over: every Conv2d and Linear (the authors' ``get_layer_metric_array``)."""
    layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    check(bool(layers), f"{type(network).__name__} has no Conv2d or Linear layer: the gradient proxies sum over them")
    return layers


def synflow(network: nn.Module, input_shape: Sequence[int], in_place: bool = False) -> float:
    """Synaptic flow of a copy of ``network`` (the module's docstring): data-free, float64, absolute weights, no BN,
    one input of ones of shape ``input_shape`` (C, H, W). ``in_place``: of the network itself, which it changes (a
    third less work where nothing else scores it)."""
    net = (network if in_place else copy.deepcopy(network)).double()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    with torch.no_grad():
        for tensor in net.state_dict().values():
            tensor.abs_()
    layers = weighted_layers(net)
    net.zero_grad()
    net(torch.ones(1, *input_shape, dtype=torch.float64, device=layers[0].weight.device)).sum().backward()
    with torch.no_grad():
        return float(sum((layer.weight * layer.weight.grad).abs().sum() for layer in layers
                         if layer.weight.grad is not None))


def jacob_cov_score(jacobian: np.ndarray) -> float:
    """Abdelfattah et al.'s score of a (B, D) jacobian: ``-Σ log(λ+k) + 1/(λ+k)`` over the eigenvalues λ of its rows'
    correlation matrix; NaN where that matrix is undefined (a constant row), as their code returns it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jacobian)
    if not np.isfinite(corr).all():
        return math.nan
    eigenvalues = np.linalg.eigvalsh(corr)  # symmetric: the authors' eig gives the same values
    return float(-np.sum(np.log(eigenvalues + JACOB_COV_K) + 1.0 / (eigenvalues + JACOB_COV_K)))


def hamming_kernel(codes: torch.Tensor) -> torch.Tensor:
    """``C Cᵀ + (1-C)(1-C)ᵀ`` of binary codes (B, D) in float64: where two images' codes agree, counted as
    ``2 C Cᵀ - r 1ᵀ - 1 rᵀ + D`` with r the row sums (one matrix product instead of two)."""
    codes = codes.double()
    rows = codes.sum(1)
    return 2 * codes @ codes.T - rows[:, None] - rows[None, :] + codes.shape[1]


def naswot_score(kernel: torch.Tensor) -> float:
    """Mellor et al.'s ``hook_logdet``: log |det K| (-inf where K is singular)."""
    return float(torch.linalg.slogdet(kernel).logabsdet)


def data_proxies(network: nn.Module, batch: Batch, names: Sequence[str]) -> dict[str, float]:
    """The data-dependent proxies ``names`` of ``network`` on one batch, from one shared forward pass in training
    mode (the module's docstring); the network's gradients are left set."""
    x, y = batch
    network.train()
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)
    handles = []
    if "naswot" in names:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            nonlocal kernel
            kernel = kernel + hamming_kernel((inputs[0].detach().flatten(1) > 0))
        handles = [m.register_forward_hook(record) for m in network.modules() if "ReLU" in type(m).__name__]
    x = x.clone().requires_grad_("jacob_cov" in names)
    try:
        out = network(x)
    finally:
        for handle in handles:
            handle.remove()
    scores: dict[str, float] = {}
    if "naswot" in names:
        scores["naswot"] = naswot_score(kernel)
    if "snip" in names or "grad_norm" in names:
        layers = weighted_layers(network)
        network.zero_grad()
        F.cross_entropy(out, y).backward(retain_graph="jacob_cov" in names)
        grads = [(layer.weight.detach(), layer.weight.grad) for layer in layers if layer.weight.grad is not None]
        if "snip" in names:
            scores["snip"] = float(sum((w * g).abs().sum() for w, g in grads))
        if "grad_norm" in names:
            scores["grad_norm"] = float(sum(g.norm() for _, g in grads))
    if "jacob_cov" in names:
        (jacobian,) = torch.autograd.grad(out.sum(), x)
        scores["jacob_cov"] = jacob_cov_score(jacobian.flatten(1).double().cpu().numpy())
    return scores


@dataclass(frozen=True)
class Proxy:
    """A zero-cost proxy: whether it needs a batch, and whether it reads the space's counts instead of a network."""

    name: str
    needs_data: bool
    from_space: bool = False
    paper: str = ""


PROXIES: dict[str, Proxy] = {proxy.name: proxy for proxy in (
    Proxy("synflow", needs_data=False, paper="Tanaka et al., NeurIPS 2020; as Abdelfattah et al., ICLR 2021"),
    Proxy("snip", needs_data=True, paper="Lee et al., ICLR 2019; as Abdelfattah et al., ICLR 2021"),
    Proxy("grad_norm", needs_data=True, paper="Abdelfattah et al., ICLR 2021"),
    Proxy("jacob_cov", needs_data=True, paper="Mellor et al. 2020 (NASWOT v1); as Abdelfattah et al., ICLR 2021"),
    Proxy("naswot", needs_data=True, paper="Mellor et al., ICML 2021 (NASWOT v2, hook_logdet)"),
    Proxy("params", needs_data=False, from_space=True, paper="SearchSpace.num_params"),
    Proxy("flops", needs_data=False, from_space=True, paper="SearchSpace.num_flops (torch's FlopCounterMode)"),
)}
"""Every zero-cost proxy by name."""


def proxy_names(text: str | Sequence[str]) -> list[str]:
    """Proxy names from a comma-separated list (or a list), each checked against ``PROXIES`` in one line."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in PROXIES]
    check(bool(names) and not unknown, f"unknown proxy {', '.join(unknown) or '(none given)'}; known: "
                                       f"{', '.join(PROXIES)}")
    return list(dict.fromkeys(names))


def init_seed(space: SearchSpace, arch: Architecture, seed: int) -> int:
    """The seed of ``arch``'s initialisation: from its key and ``seed``, so its score is the same in any order."""
    return int(hashlib.sha1(f"{space.key(arch)}@{seed}".encode()).hexdigest()[:8], 16)


def build_at_init(space: SearchSpace, arch: Architecture, shape: NetworkShape,
                  device: str | torch.device = "cpu") -> nn.Module:
    """``arch``'s network at initialisation from the global random state (``score_architecture`` seeds it)."""
    return space.build(arch, shape.num_classes, shape.in_chans, **shape.options(space)).to(device)


def score_architecture(space: SearchSpace, arch: Architecture, names: Sequence[str], shape: NetworkShape,
                       batch: Batch | None = None, seed: int = 0,
                       device: str | torch.device = "cpu") -> dict[str, float]:
    """The proxies ``names`` of one architecture (one network built for all of them; ``batch`` needed only by the
    data-dependent ones, moved to ``device``), reproducible: the random state of the initialisation and of the
    passes (a dropout layer's masks) is seeded by ``init_seed``. On CUDA the passes may differ in the last digits
    (nondeterministic kernels), ranks are the same."""
    names = proxy_names(names)
    data = [n for n in names if PROXIES[n].needs_data]
    check(batch is not None or not data, f"the proxies {', '.join(data)} need a batch of images; give one "
                                         f"(or score only {', '.join(n for n in PROXIES if not PROXIES[n].needs_data)})")
    scores: dict[str, float] = {}
    if "params" in names:
        scores["params"] = float(space.num_params(arch, shape.num_classes, shape.in_chans, **shape.options(space)))
    if "flops" in names:
        scores["flops"] = float(space.num_flops(arch, shape.num_classes, shape.in_chans, shape.input_size,
                                                **shape.options(space)))
    if "synflow" in names or data:
        with torch.random.fork_rng(devices=[]):  # seeds the weights and any dropout mask; the caller's state is kept
            torch.manual_seed(init_seed(space, arch, seed))
            network = build_at_init(space, arch, shape, device)
            if "synflow" in names:
                scores["synflow"] = synflow(network, (shape.in_chans, *shape.input_size), in_place=not data)
            if data:
                assert batch is not None
                scores.update(data_proxies(network, (batch[0].to(device), batch[1].to(device)), data))
    return {name: scores[name] for name in names}


class ProxyEvaluator(Evaluator):
    """Scores architectures of any space by one zero-cost proxy: every black-box strategy runs on it unchanged."""

    def __init__(self, space: SearchSpace, proxy: str, shape: NetworkShape = NetworkShape(),
                 batch: Batch | None = None, seed: int = 0, device: str | torch.device = "cpu") -> None:
        (self.proxy,) = proxy_names([proxy])
        if PROXIES[self.proxy].needs_data and batch is None:
            raise ConfigError(f"proxy {proxy} needs a batch of images (e.g. proxy_batch(data module, ...))")
        self.space, self.shape, self.batch, self.seed, self.device = space, shape, batch, seed, device

    def score(self, archs: Sequence[Architecture]) -> list[float]:
        return [score_architecture(self.space, arch, [self.proxy], self.shape, self.batch, self.seed,
                                   self.device)[self.proxy] for arch in archs]


def fit_images(images: torch.Tensor, in_chans: int, size: tuple[int, int]) -> torch.Tensor:
    """Images in the network's input form: grey ones repeated to ``in_chans`` channels, resized bilinearly."""
    if images.shape[1] != in_chans:
        check(images.shape[1] == 1, f"images of {images.shape[1]} channels cannot feed a network of {in_chans}")
        images = images.expand(-1, in_chans, -1, -1)
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images.contiguous()


NOISE = "noise"
"""The batch source of standard Gaussian images with uniformly drawn labels, seeded."""


def proxy_batch(data: str, batch_size: int, shape: NetworkShape, seed: int = 0,
                make_module: Callable[[str, int, int], Any] | None = None) -> Batch:
    """One batch for the data-dependent proxies: ``noise``, or the first shuffled training batch (seeded) of a data
    module by name (``plugins.data_module_class``), fitted to ``shape`` (``fit_images``)."""
    check(batch_size >= 2, f"--batch-size must be at least 2 (jacob_cov and naswot compare images), got {batch_size}")
    if data == NOISE:
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(batch_size, shape.in_chans, *shape.input_size, generator=generator),
                torch.randint(shape.num_classes, (batch_size,), generator=generator))
    from lightning_nas.plugins import data_module_class

    module = (make_module or (lambda name, size, s: data_module_class(name)(mode="eval", batch_size=size,
                                                                            seed=s)))(data, batch_size, seed)
    module.prepare_data()
    module.setup("fit")
    with torch.random.fork_rng(devices=[]):  # the training transform's crops and flips: the same batch everywhere
        torch.manual_seed(seed)
        x, y = next(iter(module.train_dataloader()))
    check(len(x) == batch_size, f"data module {data} gave a batch of {len(x)} images, not {batch_size}")
    return fit_images(x, shape.in_chans, shape.input_size), y
