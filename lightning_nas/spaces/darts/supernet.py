"""The DARTS supernet (Liu et al., ICLR 2019): search cell and the network whose architecture weights α are learned.

Every edge (i, j) of a search cell is a mixed op (``spaces.oneshot.MixedOp``): ō(x) = Σ_o softmax(α_{i,j})_o · o(x)
over the candidate ops. Each intermediate node sums the mixed ops of all earlier nodes; the cell output concatenates
the intermediate nodes. All normal cells share one α tensor and all reduction cells another (edges x ops each). The
discrete cell is derived from softmax(α) by the rule of the official DARTS code (``derive_cell``).

The modules are independent of any training loop: ``MixedOp`` and ``SearchCell`` take their op weights as a forward
argument, so any LightningModule can own and optimise its own α.
"""

from __future__ import annotations

import math
import operator
from contextlib import contextmanager, nullcontext
from functools import partial, reduce
from typing import Any, ContextManager, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.genotypes.genotype import EDGES_PER_NODE, Edge
from lightning_nas.module_state import buffers_kept
from lightning_nas.ops import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN
from lightning_nas.spaces.oneshot import MixedOp, SharedInput, check_primitives, frozen, gumbel_hard


class _ConcatChannels(torch.autograd.Function):
    """``torch.cat(states, dim=1)`` whose backward pass gives each state a dense gradient in the state's memory
    format. A channel slice of the cell output's gradient is strided, and the BN kernels of the mixed ops that read
    it as it is (``weighted_norm``) take a slow path on a strided gradient: 6.5 against 0.6 ms per call at 16
    channels, 32x32, batch 32. A channels_last state may get an NCHW gradient from the classifier's pooling too."""

    @staticmethod
    def forward(ctx: Any, *states: torch.Tensor) -> torch.Tensor:
        ctx.channels = [state.shape[1] for state in states]
        ctx.formats = [
            torch.channels_last
            if state.dim() == 4 and state.is_contiguous(memory_format=torch.channels_last) and not state.is_contiguous()
            else torch.contiguous_format
            for state in states
        ]
        return torch.cat(states, dim=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # split and contiguous are recorded under create_graph: a second derivative goes through
        slices = grad.split(ctx.channels, dim=1)
        return tuple(g.contiguous(memory_format=f) for g, f in zip(slices, ctx.formats))


def num_edges(nodes: int) -> int:
    """Edges of a search cell: intermediate node j (0-based) reads the 2 cell inputs and the j earlier nodes."""
    return sum(2 + node for node in range(nodes))


class SearchCell(nn.Module):
    """A search cell: 2 preprocessed inputs, ``nodes`` intermediate nodes, node j = Σ_{i<j} mixed op_{i,j}(node i),
    output = concat of the intermediate nodes.

    In a reduction cell the edges reading the cell inputs have stride 2; after a reduction cell the k-2 input is still
    at the larger size and is preprocessed by a factorized reduce.
    """

    def __init__(
        self,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        nodes: int = 4,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        partial_channels: int = 1,
        recompute_ops: bool = False,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        self.multiplier = nodes
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if reduction and i < 2 else 1, primitives, partial_channels, recompute_ops)
            for node in range(nodes)
            for i in range(2 + node)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, edge_weights: torch.Tensor | None = None,
        chosen: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """``weights``: (edges, ops) op weights, edges ordered node by node, each node's inputs in order;
        ``edge_weights``: one weight per edge scaling its whole output (PC-DARTS edge normalisation), or None;
        ``chosen``: one sampled op per edge (GDAS), or None."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        shared = [SharedInput(), SharedInput()]  # per state: what its edges computed for the others
        offset = 0
        for _ in range(self.nodes):
            inputs = len(states)
            picks = chosen[offset : offset + inputs] if chosen is not None else [None] * inputs
            edges = zip(self.edges[offset : offset + inputs], states, weights[offset : offset + inputs], shared, picks)
            outputs = [edge(h, w, seen, pick) for edge, h, w, seen, pick in edges]
            if edge_weights is not None:
                outputs = [b * out for b, out in zip(edge_weights[offset : offset + inputs], outputs)]
            states.append(reduce(operator.add, outputs))  # not sum(): its 0 + tensor would copy the first
            shared.append(SharedInput())
            offset += inputs
        return _ConcatChannels.apply(*states[2:])


def _strongest_edges(weights: torch.Tensor, nodes: int) -> list[tuple[int, int, int]]:
    """(edge, input, op) of the 2 edges kept per node: those whose strongest op weighs most, each with that op."""
    strength, best_op = weights.max(dim=1)
    kept: list[tuple[int, int, int]] = []
    offset = 0
    for node in range(nodes):
        inputs = sorted(range(2 + node), key=lambda i: -strength[offset + i].item())[:EDGES_PER_NODE]
        kept += [(offset + i, i, int(best_op[offset + i])) for i in inputs]
        offset += 2 + node
    return kept


def derive_cell(
    weights: torch.Tensor, primitives: Sequence[str], nodes: int, max_skip_connect: int | None = None
) -> list[Edge]:
    """The discrete cell of one cell type, from its op weights softmax(α) (edges x ops).

    For each node keep the 2 incoming edges whose strongest non-none op weighs most; each kept edge gets that op.
    This is the official DARTS rule; applying it to raw α instead of softmax(α) picks other edges, since softmax
    normalises each edge separately. Ties go to the earlier input and the earlier op.

    ``max_skip_connect`` caps the cell's skip_connects as P-DARTS does against collapse: while there are too many,
    the kept skip_connect edge whose skip weight is weakest loses skip_connect, so it falls back to its best other op
    and its node re-picks its 2 strongest edges. None keeps the plain rule.
    """
    candidates = [k for k, name in enumerate(primitives) if name != "none"]
    names = [primitives[k] for k in candidates]
    weights = weights.detach()[:, candidates].clone()
    kept = _strongest_edges(weights, nodes)
    if max_skip_connect is not None and (max_skip_connect < 0 or names == ["skip_connect"]):
        raise ConfigError(
            f"max_skip_connect={max_skip_connect} needs to be >= 0 and an op other than none and skip_connect"
        )
    if max_skip_connect is not None and "skip_connect" in names:
        skip = names.index("skip_connect")
        while len(skips := [edge for edge, _, op in kept if op == skip]) > max_skip_connect:
            weakest = min(skips, key=lambda edge: weights[edge, skip].item())
            weights[weakest, skip] = -math.inf  # this edge never picks skip_connect again: the loop ends
            kept = _strongest_edges(weights, nodes)
    return [(names[op], i) for _, i, op in kept]



def checkpoint_contexts(cell: nn.Module) -> tuple[ContextManager[None], ContextManager[None]]:
    """``checkpoint``'s (forward, recomputation) contexts for ``cell``, made when its forward pass runs: the
    recomputation in the backward pass sees the parameters as the forward pass did (an α step's are frozen then,
    not any more) and leaves the BN statistics as the forward pass updated them."""

    @contextmanager
    def recomputation(frozen_in_forward: list[nn.Parameter]) -> Iterator[None]:
        with buffers_kept(cell), frozen(frozen_in_forward):
            yield

    return nullcontext(), recomputation([p for p in cell.parameters() if not p.requires_grad])


class SearchNetwork(nn.Module):
    """The DARTS supernet: a 3x3 conv stem with ``stem_multiplier`` x C channels, ``layers`` search cells (reductions
    at 1/3 and 2/3 depth, channels doubled there), global pooling and a linear classifier.

    α (``alpha_normal``, ``alpha_reduce``: edges x ops each) are parameters of this module, so DDP averages their
    gradients like any other; ``arch_parameters()`` and ``weight_parameters()`` keep them apart for the two optimizers.
    ``partial_channels`` K > 1 makes it PC-DARTS (Xu et al., 2020): 1/K of the channels through each mixed op, and
    edge normalisation by learned ``beta_normal``, ``beta_reduce`` (one per edge, softmax over a node's inputs).
    ``checkpoint_cells`` k > 0 trades time for memory: the first k cells (the widest activations) keep only their
    inputs and recompute the rest in the backward pass (their BN running statistics are updated once, not twice).
    ``recompute_ops`` trades less time for less memory in every cell: each candidate op keeps its BN outputs only and
    recomputes its ReLUs, depthwise convs and pooling in the backward pass (first derivatives only; ``ops.recompute``).
    """

    def __init__(
        self,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_chans: int = 3,
        nodes: int = 4,
        stem_multiplier: int = 3,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        partial_channels: int = 1,
        checkpoint_cells: int = 0,
        recompute_ops: bool = False,
    ) -> None:
        super().__init__()
        if nodes < 1 or layers < 1:
            raise ConfigError(f"a search network needs at least 1 node and 1 cell, got nodes={nodes}, layers={layers}")
        if not 0 <= checkpoint_cells <= layers:
            raise ConfigError(f"checkpoint_cells must be between 0 and the {layers} cells, got {checkpoint_cells}")
        self.primitives = check_primitives(primitives)
        self.nodes = nodes
        self.partial_channels = partial_channels
        self.checkpoint_cells = checkpoint_cells
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        C_prev_prev, C_prev, C_curr, reduction_prev = C_stem, C_stem, C, False
        self.cells = nn.ModuleList()
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = SearchCell(
                C_prev_prev, C_prev, C_curr, reduction, reduction_prev, nodes, self.primitives, partial_channels,
                recompute_ops,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        shape = (num_edges(nodes), len(self.primitives))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self.tau: float | None = None
        """GDAS's Gumbel temperature: None weighs every op by softmax(α) (DARTS); a float samples one op per edge."""
        if partial_channels > 1:
            self.beta_normal = nn.Parameter(1e-3 * torch.randn(num_edges(nodes)))
            self.beta_reduce = nn.Parameter(1e-3 * torch.randn(num_edges(nodes)))

    def arch_parameters(self) -> list[nn.Parameter]:
        """α of the normal and the reduction cells (and β, with partial channels)."""
        betas = [self.beta_normal, self.beta_reduce] if self.partial_channels > 1 else []
        return [self.alpha_normal, self.alpha_reduce, *betas]

    def alphas(self) -> dict[str, nn.Parameter]:
        """α by cell type."""
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except α: the ops', the stem's and the classifier's weights w."""
        arch = set(map(id, self.arch_parameters()))
        return [p for p in self.parameters() if id(p) not in arch]

    def op_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(α) per edge, for the normal and the reduction cells."""
        return F.softmax(self.alpha_normal, dim=-1), F.softmax(self.alpha_reduce, dim=-1)

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """PC-DARTS edge normalisation: softmax(β) over each node's incoming edges, for the normal and the reduction
        cells; (None, None) without partial channels."""
        if self.partial_channels == 1:
            return None, None
        sizes = [2 + node for node in range(self.nodes)]
        normal, reduce = (
            torch.cat([F.softmax(b, -1) for b in beta.split(sizes)]) for beta in (self.beta_normal, self.beta_reduce)
        )
        return normal, reduce

    def forward(self, x: torch.Tensor, alpha_grad: bool = True, weight_grad: bool = True) -> torch.Tensor:
        """``alpha_grad=False`` treats softmax(α) (and β) as constants: a weight step needs no α gradient, and
        without one no mixed op has to keep its ops' outputs for the backward pass. ``weight_grad=False`` treats the
        weights as constants: an α step needs no weight gradient, and without one no conv keeps its input."""
        if not weight_grad:
            with frozen(self.weight_parameters()):
                return self(x, alpha_grad)
        chosen: tuple[list[int] | None, list[int] | None] = (None, None)
        if self.tau is None:
            weights = [*self.op_weights(), *self.edge_weights()]
        else:
            (normal, normal_ops), (reduce, reduce_ops) = (gumbel_hard(a, self.tau) for a in self.alphas().values())
            weights, chosen = [normal, reduce, None, None], (normal_ops, reduce_ops)
        if not alpha_grad:
            weights = [None if w is None else w.detach() for w in weights]
        normal, reduce, edge_normal, edge_reduce = weights
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            cell_weights = (reduce, edge_reduce, chosen[1]) if cell.reduction else (normal, edge_normal, chosen[0])
            if i < self.checkpoint_cells and torch.is_grad_enabled():
                s0, s1 = s1, checkpoint(cell, s0, s1, *cell_weights, use_reentrant=False,
                                        context_fn=partial(checkpoint_contexts, cell))
            else:
                s0, s1 = s1, cell(s0, s1, *cell_weights)
        return self.classifier(self.global_pool(s1).flatten(1))

    def genotype(self, max_skip_connect: int | None = None) -> Genotype:
        """The discrete architecture the current α derive (see ``derive_cell``; ``max_skip_connect`` caps the normal
        cell's skip_connects); with partial channels each edge's op weights are scaled by its edge weight first, as
        PC-DARTS derives."""
        normal, reduce = self.op_weights()
        edge_normal, edge_reduce = self.edge_weights()
        if edge_normal is not None and edge_reduce is not None:  # both or neither (partial channels)
            normal, reduce = normal * edge_normal[:, None], reduce * edge_reduce[:, None]
        concat = tuple(range(2, 2 + self.nodes))
        return Genotype(
            normal=tuple(derive_cell(normal, self.primitives, self.nodes, max_skip_connect)),
            normal_concat=concat,
            reduce=tuple(derive_cell(reduce, self.primitives, self.nodes)),
            reduce_concat=concat,
        )
