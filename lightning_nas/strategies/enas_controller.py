"""The ENAS controllers: LSTM policies that sample micro or macro architectures, as in the authors' code, or the
categorical decisions of any registered space (``DecisionController``).

Whatever its samples are, every controller gives them as its space's decisions too (``sample_decisions``,
``log_prob_decisions``): the form ENAS trains the space's shared child along, scores, derives and decodes.

They live with the strategies, not the spaces: a controller is a learned policy that the ENAS strategy trains with
REINFORCE, while a space is the fixed set of choices it picks from (the architecture dataclasses in ``spaces``).

Every decision is one LSTM step (1 layer, no bias, weights U(-0.1, 0.1)) followed by logits that are divided by the
temperature (if any) and squashed as ``tanh_constant * tanh(.)``. Input and skip choices attend over the anchors
of earlier nodes: ``v . tanh(W1 anchor_j + W2 h)``. ``forward(arch=None)`` samples; ``forward(arch)`` replays a
given architecture through the same code path (teacher forcing), so its log-probability and entropy are those a
sample of it would have returned. Both return a ``ControllerSample`` whose log-probability carries the gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.errors import check
from lightning_nas.genotypes.genotype import EDGES_PER_NODE
from lightning_nas.ops import ENAS_MACRO_OPS, ENAS_MICRO_OPS
from lightning_nas.spaces.enas_macro import MacroArchitecture
from lightning_nas.spaces.enas_micro import Edge, MicroArchitecture

State = tuple[torch.Tensor, torch.Tensor]


class ControllerSample(NamedTuple):
    """An architecture with its summed log-probability, summed entropy and the macro skip-KL penalty (0 for micro and
    decisions). ``arch``: a MicroArchitecture, a MacroArchitecture, or a space's decisions (a tuple of option
    indices) for ``DecisionController``."""

    arch: Any
    log_prob: torch.Tensor
    entropy: torch.Tensor
    skip_penalty: torch.Tensor


class Decisions:
    """Accumulates log-probabilities and entropies of successive choices; samples or replays each one."""

    def __init__(self) -> None:
        self.log_prob = torch.zeros(())
        self.entropy = torch.zeros(())

    def choose(self, logits: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor:
        """Pick one class per row of ``logits`` (sampled, or ``given``) and record its log-probability."""
        log_p = F.log_softmax(logits, dim=-1)
        choice = torch.multinomial(log_p.exp().detach(), 1).squeeze(-1) if given is None else given.to(logits.device)
        self.log_prob = self.log_prob + log_p.gather(-1, choice[:, None]).sum()
        self.entropy = self.entropy - (log_p.exp() * log_p).sum().detach()
        return choice


class LSTMController(nn.Module):
    """What every controller shares: the LSTM, the start embedding ``g_emb``, the logit squashing, the U(-0.1, 0.1)
    initialisation, sampling and teacher-forced replay."""

    def __init__(self, lstm_size: int, tanh_constant: float | None, temperature: float | None) -> None:
        super().__init__()
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        self.lstm = nn.LSTMCell(lstm_size, lstm_size, bias=False)
        self.g_emb = nn.Parameter(torch.empty(1, lstm_size))

    def reset_parameters(self) -> None:
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.1, 0.1)

    def squash(self, logits: torch.Tensor, tanh_constant: float | None) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        return logits if tanh_constant is None else tanh_constant * torch.tanh(logits)

    def sample(self) -> ControllerSample:
        """A fresh architecture, with its log-probability (with gradient) and entropy."""
        return self()

    def log_prob(self, arch: Any) -> ControllerSample:
        """Log-probability and entropy of ``arch``, recomputed by teacher forcing through the sampling path."""
        return self(arch)

    def decisions(self, arch: Any) -> tuple[int, ...]:
        """``arch`` (what this controller samples, or its fields as ``dataclasses.asdict`` gives them) as its space's
        decisions, one option index per decision; the decision controller samples decisions."""
        return tuple(int(d) for d in arch)

    def architecture(self, decisions: Sequence[int]) -> Any:
        """``decisions``' inverse: what this controller samples."""
        return tuple(decisions)

    def sample_decisions(self) -> ControllerSample:
        """``sample``, the architecture given as its space's decisions."""
        sample = self()
        return sample._replace(arch=self.decisions(sample.arch))

    def log_prob_decisions(self, decisions: Sequence[int]) -> ControllerSample:
        """``log_prob`` of the architecture ``decisions`` pick, given as those decisions."""
        return self(self.architecture(decisions))._replace(arch=tuple(decisions))

    def initial_state(self) -> State:
        zeros = self.g_emb.new_zeros(self.g_emb.shape)
        return zeros, zeros


class Controller(LSTMController):
    """What the micro and macro controllers share besides: the op embedding and the attention over anchors."""

    def __init__(self, num_ops: int, lstm_size: int, tanh_constant: float | None, temperature: float | None) -> None:
        super().__init__(lstm_size, tanh_constant, temperature)
        self.op_emb = nn.Embedding(num_ops, lstm_size)
        self.attn_1 = nn.Linear(lstm_size, lstm_size, bias=False)
        self.attn_2 = nn.Linear(lstm_size, lstm_size, bias=False)
        self.attn_v = nn.Linear(lstm_size, 1, bias=False)

    def attend(self, anchors_w_1: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """One attention score per anchor: ``v . tanh(W1 anchor_j + W2 h)``, shape (num_anchors,)."""
        return self.attn_v(torch.tanh(torch.cat(anchors_w_1) + self.attn_2(h))).squeeze(-1)


class MicroController(Controller):
    """Samples the normal cell, then the reduction cell continuing from the normal cell's final LSTM state.

    Per cell: two steps for the cell inputs (zero anchors), then per node two input choices by attention over the
    anchors of all earlier nodes, two op choices (logits ``(tanh_c / op_tanh_reduce) tanh(W h + b)``; the normal
    cell adds the fixed bias [0.25, 0.25, -0.25, ...] like the authors' sampler), and one more step whose state
    becomes the node's anchor. Defaults are the authors' code values (64 units, tanh constant 1.1, op tanh reduce
    2.5, op bias [10, 10, 0, 0, 0], no temperature); the paper uses temperature 5.0.

    The op bias b sits inside the tanh, as in the authors' code: b = 10 saturates it, so both separable convs keep
    the logit ``tanh_c / op_tanh_reduce`` whatever W h is and the gradient through b vanishes. It is a trainable
    parameter only in name: in effect a fixed prior that pins the two sep convs together.

    The squash bounds every logit to ±tanh_c (±tanh_c / op_tanh_reduce for ops), so no policy is sharper than that:
    with the authors' values the most likely input of a node with n choices has p ≤ e^1.1 / (e^1.1 + (n-1) e^-1.1)
    (0.90 for 2 inputs, 0.64 for 6), any op p ≤ 0.36 in the normal cell, and the entropy of a whole 5-node
    architecture stays above about 45 nats (58.5 for the uniform policy). ``tanh_constant=None`` removes the bound.
    """

    normal_op_bias: torch.Tensor

    def __init__(self, num_nodes: int = 5, ops: Sequence[str] = ENAS_MICRO_OPS, lstm_size: int = 64,
                 tanh_constant: float | None = 1.1, op_tanh_reduce: float = 2.5, temperature: float | None = None,
                 op_bias: Sequence[float] = (10.0, 10.0, 0.0, 0.0, 0.0), normal_op_bias: bool = True) -> None:
        super().__init__(len(ops), lstm_size, tanh_constant, temperature)
        check(len(op_bias) == len(ops), f"op_bias={list(op_bias)}: give one value per op ({', '.join(ops)})")
        self.num_nodes = num_nodes
        self.ops = tuple(ops)
        self.op_tanh_reduce = op_tanh_reduce
        self.op_logits = nn.Linear(lstm_size, len(ops))
        fixed = torch.tensor([0.25, 0.25] + [-0.25] * (len(ops) - 2)) if normal_op_bias else torch.zeros(len(ops))
        self.register_buffer("normal_op_bias", fixed)
        self.reset_parameters()
        with torch.no_grad():
            self.op_logits.bias.copy_(torch.tensor(op_bias, dtype=torch.float32))

    def decisions(self, arch: MicroArchitecture | dict[str, Any]) -> tuple[int, ...]:
        arch = arch if isinstance(arch, MicroArchitecture) else MicroArchitecture(**arch)
        return arch.decisions(self.ops)

    def architecture(self, decisions: Sequence[int]) -> MicroArchitecture:
        return MicroArchitecture.from_decisions(decisions, self.ops)

    def forward(self, arch: MicroArchitecture | None = None) -> ControllerSample:
        decisions = Decisions()
        state = self.initial_state()
        cells = {}
        for cell in ("normal", "reduce"):
            given = None if arch is None else getattr(arch, cell)
            cells[cell], state = self._sample_cell(decisions, state, given, cell == "normal")
        return ControllerSample(MicroArchitecture(**cells), decisions.log_prob, decisions.entropy, torch.zeros(()))

    def _sample_cell(self, decisions: Decisions, state: State, given: tuple[Edge, ...] | None,
                     normal: bool) -> tuple[tuple[Edge, ...], State]:
        if given is not None and len(given) != EDGES_PER_NODE * self.num_nodes:
            raise ValueError(f"architecture has {len(given) // EDGES_PER_NODE} nodes per cell, controller {self.num_nodes}")
        anchors: list[torch.Tensor] = []
        anchors_w_1: list[torch.Tensor] = []
        for _ in range(2):
            state = self.lstm(self.g_emb, state)
            anchors.append(torch.zeros_like(state[0]))
            anchors_w_1.append(self.attn_1(state[0]))
        op_bias = self.normal_op_bias if normal else torch.zeros_like(self.normal_op_bias)
        edges: list[Edge] = []
        x: torch.Tensor = self.g_emb
        for node in range(self.num_nodes):
            pair = None if given is None else given[EDGES_PER_NODE * node : EDGES_PER_NODE * (node + 1)]
            inputs = []
            for slot in range(EDGES_PER_NODE):
                state = self.lstm(x, state)
                logits = self.squash(self.attend(anchors_w_1, state[0]), self.tanh_constant)
                target = None if pair is None else torch.tensor([pair[slot][0]])
                index = decisions.choose(logits[None], target)
                inputs.append(int(index))
                x = anchors[int(index)]
            ops = []
            for slot in range(EDGES_PER_NODE):
                state = self.lstm(x, state)
                tanh_c = None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce
                logits = self.squash(self.op_logits(state[0]), tanh_c) + op_bias
                target = None if pair is None else torch.tensor([self.ops.index(pair[slot][1])])
                op = decisions.choose(logits, target)
                ops.append(self.ops[int(op)])
                x = self.op_emb(op)
            state = self.lstm(x, state)
            anchors.append(state[0])
            anchors_w_1.append(self.attn_1(state[0]))
            x = self.g_emb
            edges.extend(zip(inputs, ops))
        return tuple(edges), state


class MacroController(Controller):
    """Samples per layer an op, then (from layer 1) a skip decision for every earlier layer.

    The skip logits are ``[-q_j, q_j]`` with ``q_j`` the attention score of layer j's anchor; the next input is the
    mean of the chosen anchors. The skip penalty is the authors': per layer, the summed KL of the (sigmoid of the)
    skip logits from Bernoulli(skip_target), averaged over layers; the strategy weights it (0.8). Defaults are the
    authors' code values (64 units, tanh constant 1.5, no temperature).
    """

    skip_targets: torch.Tensor

    def __init__(self, num_layers: int = 12, ops: Sequence[str] = ENAS_MACRO_OPS, lstm_size: int = 64,
                 tanh_constant: float | None = 1.5, temperature: float | None = None, skip_target: float = 0.4) -> None:
        super().__init__(len(ops), lstm_size, tanh_constant, temperature)
        self.num_layers = num_layers
        self.ops = tuple(ops)
        self.op_logits = nn.Linear(lstm_size, len(ops), bias=False)
        self.register_buffer("skip_targets", torch.tensor([1.0 - skip_target, skip_target]))
        self.reset_parameters()

    def decisions(self, arch: MacroArchitecture | dict[str, Any]) -> tuple[int, ...]:
        arch = arch if isinstance(arch, MacroArchitecture) else MacroArchitecture.from_dict(arch)
        return arch.decisions(self.ops)

    def architecture(self, decisions: Sequence[int]) -> MacroArchitecture:
        return MacroArchitecture.from_decisions(decisions, self.ops)

    def forward(self, arch: MacroArchitecture | None = None) -> ControllerSample:
        if arch is not None and arch.num_layers != self.num_layers:
            raise ValueError(f"architecture has {arch.num_layers} layers, controller {self.num_layers}")
        decisions = Decisions()
        state = self.initial_state()
        anchors: list[torch.Tensor] = []
        anchors_w_1: list[torch.Tensor] = []
        ops, skips, penalties = [], [], []
        x: torch.Tensor = self.g_emb
        for layer in range(self.num_layers):
            state = self.lstm(x, state)
            target = None if arch is None else torch.tensor([self.ops.index(arch.ops[layer])])
            op = decisions.choose(self.squash(self.op_logits(state[0]), self.tanh_constant), target)
            ops.append(self.ops[int(op)])
            state = self.lstm(self.op_emb(op), state)
            if layer > 0:
                q = self.attend(anchors_w_1, state[0])[:, None]
                logits = self.squash(torch.cat([-q, q], dim=1), self.tanh_constant)
                target = None if arch is None else torch.tensor(arch.skips[layer])
                skip = decisions.choose(logits, target)
                skip_prob = torch.sigmoid(logits)
                penalties.append((skip_prob * torch.log(skip_prob / self.skip_targets)).sum())
                skips.append(tuple(skip.tolist()))
                x = (skip.float()[None] @ torch.cat(anchors)) / (1.0 + skip.sum())
            else:
                skips.append(())
                x = self.g_emb
            anchors.append(state[0])
            anchors_w_1.append(self.attn_1(state[0]))
        penalty = torch.stack(penalties).mean() if penalties else torch.zeros(())
        return ControllerSample(MacroArchitecture(tuple(ops), tuple(skips)), decisions.log_prob, decisions.entropy, penalty)



class DecisionController(LSTMController):
    """Samples the architecture of any space written as categorical decisions (``SearchSpace.choices``), one LSTM
    step per decision, as NAS-Bench-201's ENAS baseline samples one op per edge.

    Step d feeds the embedding of decision d-1's option (``g_emb`` first) and picks one of decision d's ``choices[d]``
    options from the logits ``tanh_c tanh(W_d h / temperature)`` (a head and an embedding per decision, as NNI's
    ENAS controller keeps per choice, since decisions may differ in their options). The architecture is the tuple of
    option indices, for ``space.decode``. Defaults are NAS-Bench-201's ENAS values (tanh constant 2.5, temperature
    5.0, which bound the most likely of 5 options to p ≤ 0.97) with this module's 64-unit, 1-layer LSTM.
    """

    def __init__(self, choices: Sequence[int], lstm_size: int = 64, tanh_constant: float | None = 2.5,
                 temperature: float | None = 5.0) -> None:
        super().__init__(lstm_size, tanh_constant, temperature)
        check(len(choices) > 0 and all(n >= 1 for n in choices), f"choices={list(choices)}: give the number of options "
                                                                  "of every decision, each 1 or more")
        self.choices = tuple(choices)
        self.decision_emb = nn.ModuleList(nn.Embedding(n, lstm_size) for n in self.choices[:-1])
        """The input of step d + 1 (the last decision feeds no step)."""
        self.decision_logits = nn.ModuleList(nn.Linear(lstm_size, n, bias=False) for n in self.choices)
        self.reset_parameters()

    def forward(self, arch: Sequence[int] | None = None) -> ControllerSample:
        if arch is not None and len(arch) != len(self.choices):
            raise ValueError(f"architecture has {len(arch)} decisions, controller {len(self.choices)}")
        decisions = Decisions()
        state = self.initial_state()
        x: torch.Tensor = self.g_emb
        picked: list[int] = []
        for d, head in enumerate(self.decision_logits):
            state = self.lstm(x, state)
            target = None if arch is None else torch.tensor([arch[d]])
            option = decisions.choose(self.squash(head(state[0]), self.tanh_constant), target)
            picked.append(int(option))
            if d < len(self.decision_emb):
                x = self.decision_emb[d](option)
        return ControllerSample(tuple(picked), decisions.log_prob, decisions.entropy, torch.zeros(()))
